package lab

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// writeCredentials writes the service-account key pair and the static
// token file of the administrator.
func (l *Lab) writeCredentials() error {
	dir := filepath.Join(l.state.StateDir, "pki")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("creating %s: %w", dir, err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return fmt.Errorf("generating the service-account key: %w", err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return fmt.Errorf("encoding the service-account key: %w", err)
	}
	pub, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		return fmt.Errorf("encoding the service-account public key: %w", err)
	}
	tok := make([]byte, 16)
	if _, err := rand.Read(tok); err != nil {
		return fmt.Errorf("making a token: %w", err)
	}
	l.token = hex.EncodeToString(tok)
	tokens := l.token + `,admin,admin,"system:masters"` + "\n"
	// barelb's programs run as their ServiceAccounts, with only the RBAC
	// of config/rbac, so that every lab test also proves those rules
	// suffice.
	l.identityTokens = map[string]string{}
	for _, component := range barelbBinaries {
		if _, err := rand.Read(tok); err != nil {
			return fmt.Errorf("making a token: %w", err)
		}
		t := hex.EncodeToString(tok)
		l.identityTokens[component] = t
		tokens += fmt.Sprintf("%s,%s,%s,%q\n", t, serviceAccountUser(component), component,
			"system:serviceaccounts,system:serviceaccounts:"+BarelbNamespace+",system:authenticated")
	}
	// Real nodes' kubelets run as their nodes (the Node authorizer's
	// system:node:NAME in system:nodes).
	l.nodeTokens = map[string]string{}
	if l.opts.Kubelets {
		for _, n := range l.state.Nodes {
			if _, err := rand.Read(tok); err != nil {
				return fmt.Errorf("making a token: %w", err)
			}
			t := hex.EncodeToString(tok)
			l.nodeTokens[n.Name] = t
			tokens += fmt.Sprintf("%s,system:node:%s,node-%s,\"system:nodes,system:authenticated\"\n", t, n.Name, n.Name)
		}
	}
	files := map[string][]byte{
		"sa.key":     pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}),
		"sa.pub":     pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pub}),
		"tokens.csv": []byte(tokens),
	}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			return fmt.Errorf("writing %s: %w", name, err)
		}
	}
	return nil
}

// serviceAccountUser is the user name of a barelb program's ServiceAccount
// (barelb-controller, barelb-speaker), as the API server authenticates it.
func serviceAccountUser(component string) string {
	return "system:serviceaccount:" + BarelbNamespace + ":barelb-" + component
}

// identityKubeconfig is the kubeconfig a barelb program runs with.
func identityKubeconfig(stateDir, component string) string {
	return filepath.Join(stateDir, "kubeconfig-"+component)
}

func writeKubeconfig(path, server, token string) error {
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["lab"] = &clientcmdapi.Cluster{Server: server, InsecureSkipTLSVerify: true}
	cfg.AuthInfos["admin"] = &clientcmdapi.AuthInfo{Token: token}
	cfg.Contexts["lab"] = &clientcmdapi.Context{Cluster: "lab", AuthInfo: "admin"}
	cfg.CurrentContext = "lab"
	if err := clientcmd.WriteToFile(*cfg, path); err != nil {
		return fmt.Errorf("writing kubeconfig %s: %w", path, err)
	}
	return nil
}

// startControlPlane starts etcd and kube-apiserver in the control-plane
// namespace and waits until the API server is ready.
func (l *Lab) startControlPlane(ctx context.Context) error {
	if err := l.writeCredentials(); err != nil {
		return err
	}
	sd := l.state.StateDir
	ns := l.state.ControlPlane.Netns
	pki := filepath.Join(sd, "pki")
	etcd, err := l.startProc("etcd", ns, filepath.Join(l.opts.BinDir, "etcd"),
		"--name=lab", "--data-dir="+filepath.Join(sd, "etcd"),
		"--listen-client-urls=http://127.0.0.1:2379", "--advertise-client-urls=http://127.0.0.1:2379",
		"--listen-peer-urls=http://127.0.0.1:2380", "--initial-advertise-peer-urls=http://127.0.0.1:2380",
		"--initial-cluster=lab=http://127.0.0.1:2380", "--unsafe-no-fsync", "--log-level=warn")
	if err != nil {
		return err
	}
	admission := []string{
		// No serviceaccount controller runs: Pods need no ServiceAccount.
		"--disable-admission-plugins=ServiceAccount",
	}
	if l.opts.Kubelets {
		// Pods get their ServiceAccount's token as a real cluster's do.
		admission = []string{"--enable-admission-plugins=NodeRestriction",
			// kubectl logs and exec: node names resolve nowhere.
			"--kubelet-preferred-address-types=InternalIP"}
	}
	apiserver, err := l.startProc("kube-apiserver", ns, filepath.Join(l.opts.BinDir, "kube-apiserver"), append(admission,
		"--etcd-servers=http://127.0.0.1:2379",
		"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
		"--service-account-key-file="+filepath.Join(pki, "sa.pub"),
		"--service-account-signing-key-file="+filepath.Join(pki, "sa.key"),
		"--cert-dir="+filepath.Join(sd, "pki", "apiserver"),
		"--secure-port="+strconv.Itoa(APIServerPort),
		"--bind-address=::",
		"--advertise-address="+controlPlaneIP,
		"--authorization-mode=Node,RBAC",
		"--token-auth-file="+filepath.Join(pki, "tokens.csv"),
		"--service-cluster-ip-range="+ServicesV4+","+ServicesV6,
		"--allow-privileged=true",
		"--enable-priority-and-fairness=false",
		"--profiling=false",
		"--v=0")...)
	if err != nil {
		return err
	}
	l.restCfg = &rest.Config{
		Host:            l.state.APIServer,
		BearerToken:     l.token,
		TLSClientConfig: rest.TLSClientConfig{Insecure: true},
		Dial: func(ctx context.Context, network, address string) (net.Conn, error) {
			return dialIn(ctx, ns, network, address)
		},
		QPS:   200,
		Burst: 400,
	}
	if err := l.startForwarder(); err != nil {
		return err
	}
	l.state.InternalKubeconfig = filepath.Join(sd, "kubeconfig-internal")
	if err := writeKubeconfig(l.state.InternalKubeconfig, l.state.APIServer, l.token); err != nil {
		return err
	}
	l.state.Kubeconfig = filepath.Join(sd, "kubeconfig")
	if err := writeKubeconfig(l.state.Kubeconfig, "https://"+l.state.Forwarder, l.token); err != nil {
		return err
	}
	for node, token := range l.nodeTokens {
		if err := writeKubeconfig(nodeKubeconfig(sd, node), l.state.APIServer, token); err != nil {
			return err
		}
	}
	for component, token := range l.identityTokens {
		if err := writeKubeconfig(identityKubeconfig(sd, component), l.state.APIServer, token); err != nil {
			return err
		}
	}
	hc := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, //nolint:gosec // self-signed lab server
		DialContext:     l.restCfg.Dial,
	}}
	defer hc.CloseIdleConnections()
	return waitFor(ctx, 60*time.Second, "kube-apiserver /readyz", func() (bool, error) {
		if err := etcd.errExited(); err != nil {
			return false, fmt.Errorf("%w (see %s)", err, l.logPath("etcd"))
		}
		if err := apiserver.errExited(); err != nil {
			return false, fmt.Errorf("%w (see %s)", err, l.logPath("kube-apiserver"))
		}
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, l.state.APIServer+"/readyz", nil)
		req.Header.Set("Authorization", "Bearer "+l.token)
		resp, err := hc.Do(req)
		if err != nil {
			return false, err
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK, nil
	})
}

// startKubeControllerManager runs the real kube-controller-manager with
// only the endpointslice controller; with real nodes also the controllers
// workloads need (Deployments, DaemonSets, ServiceAccounts and the API
// server's CA for their tokens, garbage collection, namespaces).
func (l *Lab) startKubeControllerManager() error {
	controllers := []string{"--controllers=endpointslice"}
	if l.opts.Kubelets {
		controllers = []string{
			"--controllers=endpointslice,endpointslicemirroring,deployment,replicaset,daemonset,serviceaccount," +
				"garbagecollector,namespace,root-ca-certificate-publisher-controller,disruption,nodelifecycle",
			"--root-ca-file=" + filepath.Join(l.state.StateDir, "pki", "apiserver", "apiserver.crt"),
		}
	}
	_, err := l.startProc("kube-controller-manager", l.state.ControlPlane.Netns,
		filepath.Join(l.opts.BinDir, "kube-controller-manager"), append(controllers,
			"--kubeconfig="+l.state.InternalKubeconfig,
			"--leader-elect=false",
			"--use-service-account-credentials=false",
			"--secure-port=0",
			"--concurrent-service-endpoint-syncs=10",
			"--endpointslice-updates-batch-period=0s",
			"--v=0")...)
	return err
}

// startScheduler runs the real kube-scheduler (real nodes only).
func (l *Lab) startScheduler() error {
	_, err := l.startProc("kube-scheduler", l.state.ControlPlane.Netns,
		filepath.Join(l.opts.BinDir, "kube-scheduler"),
		"--kubeconfig="+l.state.InternalKubeconfig,
		"--leader-elect=false",
		"--secure-port=0",
		"--v=0")
	return err
}

// startForwarder listens on a loopback port of the root namespace and
// forwards every connection to the API server inside the lab.
func (l *Lab) startForwarder() error {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fmt.Errorf("listening for the API forwarder: %w", err)
	}
	l.listener = ln
	l.state.Forwarder = ln.Addr().String()
	target := net.JoinHostPort(controlPlaneIP, strconv.Itoa(APIServerPort))
	ns := l.state.ControlPlane.Netns
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				up, err := dialIn(ctx, ns, "tcp", target)
				cancel()
				if err != nil {
					return
				}
				defer up.Close()
				done := make(chan struct{}, 2)
				go func() { _, _ = io.Copy(up, c); closeWrite(up); done <- struct{}{} }()
				go func() { _, _ = io.Copy(c, up); closeWrite(c); done <- struct{}{} }()
				<-done
				<-done
			}()
		}
	}()
	return nil
}

func closeWrite(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.CloseWrite()
	}
}

func (l *Lab) logPath(key string) string {
	return filepath.Join(l.state.StateDir, "logs", key+".log")
}
