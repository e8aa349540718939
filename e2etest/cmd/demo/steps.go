package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/barelb/barelb/e2etest/lab"
)

// session is a running demo: the lab and what both demos do on it.
type session struct {
	ctx context.Context
	l   *lab.Lab
}

// up says how long the lab took and arranges its tear-down, which the
// caller defers.
func (s session) up(start time.Time, what string) func() {
	fmt.Printf("    lab %s up in %v\n", s.l.Prefix(), time.Since(start).Round(100*time.Millisecond))
	return func() {
		step("Tearing the lab down")
		s.l.Down()
		fmt.Printf("    done: no namespace, %s or file of the lab is left\n", what)
	}
}

// kubectl runs kubectl against the lab, showing the command and its output.
func (s session) kubectl(args ...string) error {
	fmt.Printf("$ kubectl %s\n", strings.Join(args, " "))
	cmd := exec.CommandContext(s.ctx, "kubectl", append([]string{"--kubeconfig", s.l.Kubeconfig()}, args...)...)
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	return cmd.Run()
}

// apply shows a manifest as a heredoc and applies it.
func (s session) apply(manifest string) error {
	fmt.Printf("$ kubectl apply -f - <<EOF\n%sEOF\n", manifest)
	cmd := exec.CommandContext(s.ctx, "kubectl", "--kubeconfig", s.l.Kubeconfig(), "apply", "-f", "-")
	cmd.Stdin = strings.NewReader(manifest)
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	return cmd.Run()
}

// addresses waits until Service default/name has an address per family,
// shows it, and returns them.
func (s session) addresses(name string) ([]string, error) {
	var ips []string
	if err := poll(s.ctx, 60*time.Second, "an EXTERNAL-IP", func() bool {
		svc, err := s.l.Clientset().CoreV1().Services("default").Get(s.ctx, name, metav1.GetOptions{})
		if err != nil {
			return false
		}
		ips = ips[:0]
		for _, in := range svc.Status.LoadBalancer.Ingress {
			ips = append(ips, in.IP)
		}
		return len(ips) == 2
	}); err != nil {
		return nil, err
	}
	fmt.Println("\nThe controller gave the Service an address per family:")
	return ips, s.kubectl("get", "svc", name)
}

// curlEach fetches each address four times from the client.
func (s session) curlEach(ips []string) error {
	step("Reaching the Service from a client on the LAN")
	for _, ip := range ips {
		url := lab.URL(ip)
		fmt.Printf("$ curl %s   (four times, from the client)\n", url)
		if err := poll(s.ctx, 60*time.Second, "an answer from "+url, func() bool {
			_, err := s.l.Get("client", url, time.Second)
			return err == nil
		}); err != nil {
			return err
		}
		for range 4 {
			answer, err := s.l.Get("client", url, 2*time.Second)
			if err != nil {
				answer = "error: " + err.Error()
			}
			fmt.Println("   ", answer)
		}
	}
	return nil
}
