package lab

import (
	"fmt"
	"os"
	"path/filepath"
)

// Where real nodes find the images the lab imports into their containerd:
// names no registry serves, so that nothing is pulled by mistake.
const (
	// ImageRepo holds barelb's images: ImageRepo/controller:TAG and
	// ImageRepo/speaker:TAG.
	ImageRepo = "lab.barelb.io/barelb"
	// BackendImage is the small HTTP server of e2etest/cmd/backend.
	BackendImage = "lab.barelb.io/backend:lab"
)

// BarelbImages are barelb's images from imageDir (`make images`) under
// the names ImageRepo gives them, tagged tag.
func BarelbImages(imageDir, tag string) []Image {
	var out []Image
	for _, prog := range []string{"controller", "speaker"} {
		out = append(out, Image{Name: ImageRepo + "/" + prog + ":" + tag, Path: filepath.Join(imageDir, prog+".oci.tar")})
	}
	return out
}

// WriteOverlay writes into dir a kustomization that is the repository's
// config/default with barelb's images set to ImageRepo's, tagged tag: the
// README's `kubectl apply -k` with the images a user would set.
func WriteOverlay(dir, repoRoot, tag string) error {
	base, err := filepath.Rel(dir, filepath.Join(repoRoot, "config", "default"))
	if err != nil {
		return fmt.Errorf("finding config/default from %s: %w", dir, err)
	}
	k := fmt.Sprintf(`apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
- %s
images:
- name: ghcr.io/barelb/controller
  newName: %s/controller
  newTag: %s
- name: ghcr.io/barelb/speaker
  newName: %s/speaker
  newTag: %s
`, base, ImageRepo, tag, ImageRepo, tag)
	if err := os.WriteFile(filepath.Join(dir, "kustomization.yaml"), []byte(k), 0o644); err != nil {
		return fmt.Errorf("writing the kustomization: %w", err)
	}
	return nil
}

// BackendManifest is a Deployment of BackendImage in namespace default
// (each pod answers with its name) and a dual-stack LoadBalancer Service
// in front of it, both called name.
func BackendManifest(name string, replicas int) string {
	return fmt.Sprintf(`apiVersion: apps/v1
kind: Deployment
metadata:
  name: %[1]s
  namespace: default
spec:
  replicas: %[2]d
  selector:
    matchLabels: {app: %[1]s}
  template:
    metadata:
      labels: {app: %[1]s}
    spec:
      containers:
      - name: backend
        image: %[3]s
        imagePullPolicy: Never
        env:
        - name: POD_NAME
          valueFrom: {fieldRef: {fieldPath: metadata.name}}
        ports:
        - {name: http, containerPort: 8080}
        readinessProbe:
          httpGet: {path: /healthz, port: http}
          periodSeconds: 1
---
apiVersion: v1
kind: Service
metadata:
  name: %[1]s
  namespace: default
spec:
  type: LoadBalancer
  ipFamilyPolicy: RequireDualStack
  ipFamilies: [IPv4, IPv6]
  selector: {app: %[1]s}
  ports:
  - {name: http, port: 80, targetPort: http}
`, name, replicas, BackendImage)
}
