package cli

import (
	"fmt"

	"github.com/spf13/pflag"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/barelb/barelb/internal/convert"
	"github.com/barelb/barelb/internal/scheme"
)

// kubeFlags are kubectl's connection flags, and barelb's namespace.
type kubeFlags struct {
	loading   *clientcmd.ClientConfigLoadingRules
	overrides *clientcmd.ConfigOverrides
	namespace string
	output    string
}

func bindKubeFlags(fs *pflag.FlagSet) *kubeFlags {
	k := &kubeFlags{
		loading:   clientcmd.NewDefaultClientConfigLoadingRules(),
		overrides: &clientcmd.ConfigOverrides{},
	}
	fs.StringVar(&k.loading.ExplicitPath, clientcmd.RecommendedConfigPathFlag, "", "path to the kubeconfig file (default: KUBECONFIG, then ~/.kube/config)")
	names := clientcmd.RecommendedConfigOverrideFlags("")
	// --namespace is barelb's namespace here, not the context's default.
	names.ContextOverrideFlags.Namespace.LongName = ""
	names.ContextOverrideFlags.Namespace.ShortName = ""
	clientcmd.BindOverrideFlags(k.overrides, fs, names)
	fs.StringVarP(&k.namespace, "namespace", "n", convert.DefaultNamespace, "barelb's namespace, where its pools and status objects live")
	fs.StringVarP(&k.output, "output", "o", "table", "output format: table or json")
	return k
}

func (k *kubeFlags) check() error {
	if k.output != "table" && k.output != "json" {
		return usageError{fmt.Sprintf("--output %q: want table or json", k.output)}
	}
	return nil
}

// client connects as kubectl would with the same flags.
func (k *kubeFlags) client() (client.Client, error) {
	cfg, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(k.loading, k.overrides).ClientConfig()
	if err != nil {
		return nil, fmt.Errorf("loading the kubeconfig: %w", err)
	}
	sch, err := scheme.New()
	if err != nil {
		return nil, err
	}
	c, err := client.New(cfg, client.Options{Scheme: sch})
	if err != nil {
		return nil, fmt.Errorf("connecting to %s: %w", cfg.Host, err)
	}
	return c, nil
}
