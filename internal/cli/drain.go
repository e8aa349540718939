package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	barelbv1beta1 "github.com/barelb/barelb/api/v1beta1"
)

// drainPoll is how often drain looks whether the node still announces.
const drainPoll = 500 * time.Millisecond

func runDrain(ctx context.Context, args []string, s Streams, drain bool) error {
	name, synopsis := "undrain", "undrain NODE [--namespace barelb-system] [kubectl connection flags]"
	if drain {
		name, synopsis = "drain", "drain NODE [--wait=true] [--timeout 1m] [--namespace barelb-system] [kubectl connection flags]"
	}
	cmd := newCommand(name, synopsis, s)
	k := bindKubeFlags(cmd.fs)
	wait := cmd.fs.Bool("wait", true, "wait until no ServiceL2Status names the node any more")
	timeout := cmd.fs.Duration("timeout", time.Minute, "how long --wait waits")
	node, err := cmd.parseNode(args)
	if err != nil {
		return err
	}
	c, err := k.client()
	if err != nil {
		return err
	}
	if !drain {
		if err := Undrain(ctx, c, node); err != nil {
			return err
		}
		fmt.Fprintf(s.Out, "node/%s undrained: it may announce layer-2 addresses again\n", node)
		return nil
	}
	if err := Drain(ctx, c, node); err != nil {
		return err
	}
	fmt.Fprintf(s.Out, "node/%s drained: its layer-2 addresses move to other nodes\n", node)
	if !*wait {
		return nil
	}
	wctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	left, err := WaitDrained(wctx, c, k.namespace, node)
	if err != nil {
		if len(left) > 0 {
			return fmt.Errorf("node %s still announces %s after %v (no other node may announce them, or their new announcer has not reported yet): %w",
				node, strings.Join(left, ", "), *timeout, err)
		}
		return err
	}
	fmt.Fprintf(s.Out, "node/%s announces no layer-2 address\n", node)
	return nil
}

// Drain labels node barelb.io/drain: its speaker hands its layer-2
// addresses to other nodes, make-before-break, and no speaker elects it
// while the label is there (unless no other node may announce an
// address).
func Drain(ctx context.Context, c client.Client, node string) error {
	return patchDrainLabel(ctx, c, node, "true")
}

// Undrain removes the barelb.io/drain label: the node is a candidate
// again, and balanced placement may move addresses back to it (again
// make-before-break).
func Undrain(ctx context.Context, c client.Client, node string) error {
	return patchDrainLabel(ctx, c, node, nil)
}

// patchDrainLabel sets the label to value, or removes it when value is
// nil (a JSON merge patch: no read-modify-write race with other writers
// of the Node).
func patchDrainLabel(ctx context.Context, c client.Client, node string, value any) error {
	patch, err := json.Marshal(map[string]any{"metadata": map[string]any{"labels": map[string]any{barelbv1beta1.LabelDrain: value}}})
	if err != nil {
		return fmt.Errorf("making the patch: %w", err)
	}
	obj := &corev1.Node{}
	obj.Name = node
	if err := c.Patch(ctx, obj, client.RawPatch(types.MergePatchType, patch)); err != nil {
		return fmt.Errorf("labelling node %s: %w", node, err)
	}
	return nil
}

// WaitDrained waits until no ServiceL2Status in namespace names node; on
// ctx's end it returns the Services (namespace/name, sorted) whose status
// still does, with ctx's error.
func WaitDrained(ctx context.Context, c client.Client, namespace, node string) ([]string, error) {
	for {
		var list barelbv1beta1.ServiceL2StatusList
		if err := c.List(ctx, &list, client.InNamespace(namespace)); err != nil {
			return nil, fmt.Errorf("listing ServiceL2Statuses: %w", err)
		}
		var left []string
		for _, st := range list.Items {
			if st.Status.Node == node {
				left = append(left, st.Status.ServiceNamespace+"/"+st.Status.ServiceName)
			}
		}
		sort.Strings(left)
		if len(left) == 0 {
			return nil, nil
		}
		select {
		case <-ctx.Done():
			return left, ctx.Err()
		case <-time.After(drainPoll):
		}
	}
}
