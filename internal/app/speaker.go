package app

import (
	"context"
	"flag"

	"k8s.io/apimachinery/pkg/util/validation"
)

// The speaker's defaults.
const (
	SpeakerMetricsBindAddress     = ":7473"
	SpeakerHealthProbeBindAddress = ":7475"
	// NodeNameEnv is the environment variable --node-name defaults to; the
	// DaemonSet sets it from the Downward API's spec.nodeName.
	NodeNameEnv = "NODE_NAME"
)

// SpeakerOptions are the speaker's settings.
type SpeakerOptions struct {
	Options
	// NodeName is the node this speaker runs on and announces from.
	NodeName string
}

func parseSpeaker(inv Invocation) (SpeakerOptions, error) {
	o := SpeakerOptions{
		Options: DefaultOptions(SpeakerMetricsBindAddress, SpeakerHealthProbeBindAddress),
	}
	err := parseFlags("speaker", inv, &o.Options, func(fs *flag.FlagSet) {
		fs.StringVar(&o.NodeName, "node-name", "",
			"Name of the node this speaker runs on (default $"+NodeNameEnv+").")
	})
	if err != nil || o.ShowVersion {
		return o, err
	}
	if o.NodeName == "" {
		o.NodeName = inv.getenv(NodeNameEnv)
	}
	if o.NodeName == "" {
		return o, usageErrorf("no node name: set --node-name or $%s (from the Downward API's spec.nodeName)", NodeNameEnv)
	}
	if errs := validation.IsDNS1123Subdomain(o.NodeName); len(errs) > 0 {
		return o, usageErrorf("node name %q is not a node name: %v", o.NodeName, errs)
	}
	return o, nil
}

// RunSpeaker runs the speaker, which announces Services' addresses from one
// node, until ctx ends. Its error goes to Exit.
func RunSpeaker(ctx context.Context, inv Invocation) error {
	o, err := parseSpeaker(inv)
	if err != nil {
		return err
	}
	if o.ShowVersion {
		return printVersion(inv, "speaker")
	}
	return start(ctx, inv, startup{
		program:   "speaker",
		options:   o.Options,
		logValues: []any{"node", o.NodeName},
		manager:   []Option{WithReadyAfterSync(configObjects()...)},
	})
}
