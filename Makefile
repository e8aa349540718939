# barelb — the two commands a newcomer types are `make demo` and `make test`.
SHELL := /usr/bin/env bash -o pipefail
.SHELLFLAGS := -ec
.DEFAULT_GOAL := help

BIN := $(CURDIR)/bin
TOOLS_DIR := e2etest/tools
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X main.version=$(VERSION)
# The control-plane binaries report this version, or kubectl cannot parse it.
KUBE_VERSION := v1.32.4
KUBE_LDFLAGS := -X k8s.io/component-base/version.gitVersion=$(KUBE_VERSION) \
	-X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=32
# The checksum database does not know k8s.io/kubernetes and some staging
# modules; go.sum of the tools module pins their hashes instead. This applies
# to the tools module only, never to the product.
TOOLS_ENV := GONOSUMDB=k8s.io,sigs.k8s.io GOFLAGS=-mod=mod
GO_TEST_FLAGS ?= -count=1
# Every go command here runs Go 1.27.3: the standard library of the Go these
# machines have (1.26.8) has vulnerabilities fixed only in 1.26.10, and
# go1.27.3 is the newer toolchain their module proxy serves (the go command
# fetches it once, about 10 s). `make GOTOOLCHAIN=local` builds with the
# machine's own Go instead; `make vulncheck` then reports the standard
# library.
export GOTOOLCHAIN := go1.27.3
# The tools that type-check the product (staticcheck, govulncheck,
# controller-gen) are built again when the toolchain changes: one built
# with an older Go refuses files that need a newer one.
TOOLCHAIN_STAMP := $(BIN)/.toolchain-$(GOTOOLCHAIN)
$(TOOLCHAIN_STAMP):
	mkdir -p $(BIN) && rm -f $(BIN)/.toolchain-* && touch $@
export KUBEBUILDER_ASSETS := $(BIN)

TOOL_BINS := $(BIN)/etcd $(BIN)/kube-apiserver $(BIN)/kube-proxy $(BIN)/kube-controller-manager \
	$(BIN)/kube-scheduler $(BIN)/kubelet $(BIN)/controller-gen $(BIN)/staticcheck $(BIN)/helm $(BIN)/promtool
# MetalLB, for `make compare` (e2etest/compare): its released controller and
# speaker, built from the module proxy in a module of their own
# (e2etest/tools/metallb pins the version), and its CRDs from the same
# module source.
METALLB_DIR := $(BIN)/metallb
METALLB_BINS := $(METALLB_DIR)/controller $(METALLB_DIR)/speaker
# Helm, for the chart tests: Debian has no package, so it is built from the
# module proxy in its own module (e2etest/tools/helm), at this version.
HELM_VERSION := v3.17.3

.PHONY: help
help: ## Show the targets.
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-16s %s\n", $$1, $$2}'

.PHONY: build
build: ## Build the controller, speaker and kubectl plugin into bin/.
	go build -ldflags "$(LDFLAGS)" -o $(BIN)/controller ./controller
	go build -ldflags "$(LDFLAGS)" -o $(BIN)/speaker ./speaker
	go build -ldflags "$(LDFLAGS)" -o $(BIN)/kubectl-barelb ./kubectl-barelb

.PHONY: tools
tools: $(TOOL_BINS) ## Build etcd, kube-apiserver, kube-proxy, kube-controller-manager, kube-scheduler, kubelet, controller-gen, staticcheck, helm, promtool from source.

$(BIN)/etcd: $(TOOLS_DIR)/go.mod $(TOOLS_DIR)/go.sum $(TOOLS_DIR)/etcd/main.go
	cd $(TOOLS_DIR) && $(TOOLS_ENV) go build -o $@ ./etcd
$(BIN)/kube-apiserver: $(TOOLS_DIR)/go.mod $(TOOLS_DIR)/go.sum
	cd $(TOOLS_DIR) && $(TOOLS_ENV) go build -ldflags "$(KUBE_LDFLAGS)" -o $@ k8s.io/kubernetes/cmd/kube-apiserver
$(BIN)/kube-proxy: $(TOOLS_DIR)/go.mod $(TOOLS_DIR)/go.sum
	cd $(TOOLS_DIR) && $(TOOLS_ENV) go build -ldflags "$(KUBE_LDFLAGS)" -o $@ k8s.io/kubernetes/cmd/kube-proxy
$(BIN)/kube-controller-manager: $(TOOLS_DIR)/go.mod $(TOOLS_DIR)/go.sum
	cd $(TOOLS_DIR) && $(TOOLS_ENV) go build -ldflags "$(KUBE_LDFLAGS)" -o $@ k8s.io/kubernetes/cmd/kube-controller-manager
$(BIN)/kube-scheduler: $(TOOLS_DIR)/go.mod $(TOOLS_DIR)/go.sum
	cd $(TOOLS_DIR) && $(TOOLS_ENV) go build -ldflags "$(KUBE_LDFLAGS)" -o $@ k8s.io/kubernetes/cmd/kube-scheduler
$(BIN)/kubelet: $(TOOLS_DIR)/go.mod $(TOOLS_DIR)/go.sum
	cd $(TOOLS_DIR) && $(TOOLS_ENV) go build -ldflags "$(KUBE_LDFLAGS)" -o $@ k8s.io/kubernetes/cmd/kubelet
$(BIN)/controller-gen: $(TOOLS_DIR)/go.mod $(TOOLS_DIR)/go.sum $(TOOLCHAIN_STAMP)
	cd $(TOOLS_DIR) && $(TOOLS_ENV) go build -o $@ sigs.k8s.io/controller-tools/cmd/controller-gen
$(BIN)/staticcheck: $(TOOLS_DIR)/go.mod $(TOOLS_DIR)/go.sum $(TOOLCHAIN_STAMP)
	cd $(TOOLS_DIR) && $(TOOLS_ENV) go build -o $@ honnef.co/go/tools/cmd/staticcheck
# govulncheck and the Go vulnerability database it reads, both pinned in
# their own module (e2etest/tools/govulncheck): the database is the
# golang.org/x/vulndb module's reports, indexed by its own indexdb into
# bin/vulndb (vuln.go.dev is not reachable from these machines; the module
# proxy is).
VULN_DIR := $(TOOLS_DIR)/govulncheck
$(BIN)/govulncheck: $(VULN_DIR)/go.mod $(VULN_DIR)/go.sum $(TOOLCHAIN_STAMP)
	cd $(VULN_DIR) && go build -o $@ golang.org/x/vuln/cmd/govulncheck
$(BIN)/vulndb: $(VULN_DIR)/go.mod $(VULN_DIR)/go.sum
	cd $(VULN_DIR) && go build -o $(BIN)/vulndb-indexdb golang.org/x/vulndb/cmd/indexdb
	rm -rf $@.tmp && $(BIN)/vulndb-indexdb -vulns "$$(cd $(VULN_DIR) && go list -m -f '{{.Dir}}' golang.org/x/vulndb)/data/osv" -out $@.tmp
	rm -rf $@ && mv $@.tmp $@

# promtool checks and unit-tests the alerting rules (internal/metrics);
# built from the module proxy in its own module, Prometheus's dependencies
# being far from the product's.
$(BIN)/promtool: $(TOOLS_DIR)/promtool/go.mod $(TOOLS_DIR)/promtool/go.sum
	cd $(TOOLS_DIR)/promtool && go build -o $@ github.com/prometheus/prometheus/cmd/promtool
$(BIN)/helm: $(TOOLS_DIR)/helm/go.mod $(TOOLS_DIR)/helm/go.sum
	cd $(TOOLS_DIR)/helm && go build -ldflags "-X helm.sh/helm/v3/internal/version.version=$(HELM_VERSION)" -o $@ helm.sh/helm/v3/cmd/helm

.PHONY: metallb
metallb: $(METALLB_BINS) ## Build MetalLB's controller and speaker (the version e2etest/tools/metallb pins) and copy its CRDs into bin/metallb/.

$(METALLB_DIR)/%: $(TOOLS_DIR)/metallb/go.mod $(TOOLS_DIR)/metallb/go.sum
	cd $(TOOLS_DIR)/metallb && go build -o $@ go.universe.tf/metallb/$*
	@src=$$(cd $(TOOLS_DIR)/metallb && go list -m -f '{{.Dir}}' go.universe.tf/metallb); \
	mkdir -p $(METALLB_DIR)/crds && cp $$src/config/crd/bases/*.yaml $(METALLB_DIR)/crds/ && chmod u+w $(METALLB_DIR)/crds/*.yaml

.PHONY: generate
generate: $(BIN)/controller-gen ## Generate the pool CEL rules (go generate) and deepcopy code for the API types.
	go generate ./api/...
	$(BIN)/controller-gen object paths=./api/...

.PHONY: manifests
manifests: $(BIN)/controller-gen ## Generate CRD manifests into config/crd/bases (and their copies in the Helm chart).
	$(BIN)/controller-gen crd paths=./api/... output:crd:artifacts:config=config/crd/bases
	rm -f config/helm/barelb/crds/*.yaml && cp config/crd/bases/*.yaml config/helm/barelb/crds/

GENERATED = api/v1beta1/ipaddresspool_types.go api/v1beta1/zz_generated.deepcopy.go config/crd/bases/*.yaml config/helm/barelb/crds/*.yaml

.PHONY: check-generated
check-generated: $(BIN)/controller-gen ## Fail when generated files are stale (and regenerate them).
	@before=$$(cat $(GENERATED) | sha256sum); \
	$(MAKE) --no-print-directory generate manifests >/dev/null; \
	after=$$(cat $(GENERATED) | sha256sum); \
	if [ "$$before" != "$$after" ]; then \
		echo "generated files were stale: they are regenerated now; review and commit them"; exit 1; \
	fi; echo "generated files are current"

.PHONY: lint
lint: $(BIN)/staticcheck check-tidy vulncheck ## gofmt, go vet, staticcheck, go mod tidy and govulncheck; go build and go vet for macOS too.
	@out=$$(gofmt -l $$(git ls-files -co --exclude-standard '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	go vet ./...
	$(BIN)/staticcheck ./...
	@# Linux-only code lives in _linux.go files with _other.go stubs that
	@# return an error, so that the rest builds and is vetted elsewhere too.
	GOOS=darwin go build ./...
	GOOS=darwin go vet ./...

# govulncheck has no way to accept a finding: its JSON goes through
# e2etest/cmd/vulngate, which fails on vulnerable code called that
# $(VULN_DIR)/accepted.txt does not list with its reason (and on a listed
# one no longer reported).
.PHONY: vulncheck
vulncheck: $(BIN)/govulncheck $(BIN)/vulndb ## govulncheck against the pinned Go vulnerability database, with the accepted list.
	$(BIN)/govulncheck -db file://$(BIN)/vulndb -format json ./... | go run ./e2etest/cmd/vulngate -accepted $(VULN_DIR)/accepted.txt

# Every module of the repository: the product's and the tools'.
GO_MODULES := . $(TOOLS_DIR) $(TOOLS_DIR)/helm $(TOOLS_DIR)/imagebuild $(TOOLS_DIR)/promtool $(TOOLS_DIR)/traefik $(VULN_DIR)

.PHONY: check-tidy
check-tidy: ## Fail when `go mod tidy` would change a go.mod or go.sum (it changes nothing).
	@for m in $(GO_MODULES); do \
		env=""; if [ "$$m" = "$(TOOLS_DIR)" ]; then env="GONOSUMDB=k8s.io,sigs.k8s.io"; fi; \
		if ! out=$$(cd $$m && env $$env go mod tidy -diff 2>&1); then \
			echo "go mod tidy would change $$m/go.mod or go.sum (run it there and commit):"; echo "$$out"; exit 1; \
		fi; \
	done; echo "go.mod and go.sum are tidy"

.PHONY: unit
unit: ## Unit tests only (no control plane, no root).
	go test $(GO_TEST_FLAGS) -short ./...

# The race detector runs on every package but the lab suites of e2etest/:
# those drive the programs as separate processes built without it (their
# in-process code is the harness), and -race would double their time.
RACE_PKGS = $$(go list ./... | grep -v '/e2etest/')
LAB_PKGS = $$(go list ./... | grep '/e2etest/')

.PHONY: test
test: deps tools metallb build images cluster-images check-generated lint ## Everything CI runs: lint, unit, integration and end-to-end tests.
	go test $(GO_TEST_FLAGS) -race $(RACE_PKGS)
	go test $(GO_TEST_FLAGS) $(LAB_PKGS)

.PHONY: race
race: ## Unit and integration tests with the race detector (what `make test` runs outside e2etest/).
	go test $(GO_TEST_FLAGS) -race $(RACE_PKGS)

# Debian packages the tests use; installed by `make deps` when missing.
# iptables and conntrack: kube-proxy in the lab; frr: the lab's BGP router; curl: the lab's client.
# qemu-user-static: the image test runs the arm64 binaries too.
# containerd, runc, containernetworking-plugins: the real nodes of e2etest/cluster.
DEB_PACKAGES ?= git iproute2 iptables conntrack frr curl qemu-user-static \
	containerd runc containernetworking-plugins

# Container images, without a container engine: static binaries per
# platform on a minimal base, each program a multi-platform OCI image index
# in an OCI image-layout tarball (load with `skopeo copy oci-archive:...`,
# `ctr images import`, or `docker load` after conversion).
IMAGE_PLATFORMS ?= linux/amd64 linux/arm64
IMAGE_PROGRAMS := controller speaker
IMAGES_DIR := $(BIN)/images

.PHONY: images
images: $(BIN)/imagebuild ## Build the controller and speaker images (amd64, arm64) into bin/images/ as OCI tarballs.
	@for prog in $(IMAGE_PROGRAMS); do \
		args=""; \
		for platform in $(IMAGE_PLATFORMS); do \
			os=$${platform%/*}; arch=$${platform#*/}; out=$(BIN)/$${os}_$${arch}/$$prog; \
			CGO_ENABLED=0 GOOS=$$os GOARCH=$$arch go build -trimpath -ldflags "-s -w $(LDFLAGS)" -o $$out ./$$prog; \
			args="$$args -binary $$platform=$$out"; \
		done; \
		$(BIN)/imagebuild -name $$prog -version $(VERSION) $$args -out $(IMAGES_DIR)/$$prog.oci.tar; \
	done

# The images the real nodes of e2etest/cluster run besides barelb's: the pod
# sandbox (pause) and a small static HTTP backend, built like barelb's for
# this machine's platform only, because no registry is reachable.
CLUSTER_IMAGE_PROGRAMS := pause backend
HOST_PLATFORM := $(shell go env GOOS)/$(shell go env GOARCH)

# Traefik, the ingress controller of the cluster suite's user scenario
# (TestIngress), built from the release e2etest/tools/traefik pins: a few
# minutes of compiling on a fresh machine, then cached by make.
TRAEFIK_VERSION := $(shell sed -n 's/^require github.com\/traefik\/traefik\/v3 //p' $(TOOLS_DIR)/traefik/go.mod)
TRAEFIK_BIN := $(BIN)/$(subst /,_,$(HOST_PLATFORM))/traefik
$(TRAEFIK_BIN): $(TOOLS_DIR)/traefik/go.mod $(TOOLS_DIR)/traefik/go.sum
	cd $(TOOLS_DIR)/traefik && CGO_ENABLED=0 go build -trimpath \
		-ldflags "-s -w -X github.com/traefik/traefik/v3/pkg/version.Version=$(TRAEFIK_VERSION)" \
		-o $@ github.com/traefik/traefik/v3/cmd/traefik

.PHONY: cluster-base-images cluster-images
cluster-base-images: $(BIN)/imagebuild ## Build the pause and backend images of real nodes into bin/images/.
	@for prog in $(CLUSTER_IMAGE_PROGRAMS); do \
		out=$(BIN)/$$(echo $(HOST_PLATFORM) | tr / _)/$$prog; \
		CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o $$out ./e2etest/cmd/$$prog; \
		$(BIN)/imagebuild -name $$prog -version $(VERSION) -binary $(HOST_PLATFORM)=$$out -out $(IMAGES_DIR)/$$prog.oci.tar; \
	done
cluster-images: cluster-base-images $(TRAEFIK_BIN) ## Build the images of the cluster suite into bin/images/: pause, backend and Traefik.
	$(BIN)/imagebuild -name traefik -version $(TRAEFIK_VERSION) -binary $(HOST_PLATFORM)=$(TRAEFIK_BIN) -out $(IMAGES_DIR)/traefik.oci.tar

$(BIN)/imagebuild: $(TOOLS_DIR)/imagebuild/go.mod $(TOOLS_DIR)/imagebuild/go.sum $(TOOLS_DIR)/imagebuild/main.go
	cd $(TOOLS_DIR)/imagebuild && go build -o $@ .

# One-file install, as MetalLB's metallb-native.yaml: config/default with
# the images of this VERSION, plus the Helm chart packaged with the same
# tags. `kubectl apply -f bin/release/barelb.yaml` installs barelb.
IMAGE_REGISTRY ?= ghcr.io/barelb
RELEASE_DIR ?= $(BIN)/release

.PHONY: release
release: $(BIN)/helm ## Write bin/release/barelb.yaml (one install file, images tagged VERSION) and the packaged chart.
	@work=$$(mktemp -d) && trap 'rm -rf $$work' EXIT && mkdir -p $(RELEASE_DIR) && \
	printf '%s\n' 'apiVersion: kustomize.config.k8s.io/v1beta1' 'kind: Kustomization' \
		'resources:' "- $$(realpath --relative-to=$$work $(CURDIR)/config/default)" 'images:' \
		'- name: ghcr.io/barelb/controller' "  newName: $(IMAGE_REGISTRY)/controller" "  newTag: $(VERSION)" \
		'- name: ghcr.io/barelb/speaker' "  newName: $(IMAGE_REGISTRY)/speaker" "  newTag: $(VERSION)" \
		> $$work/kustomization.yaml && \
	{ echo "# barelb $(VERSION): kubectl apply -f barelb.yaml"; kubectl kustomize $$work; } > $(RELEASE_DIR)/barelb.yaml && \
	cp -r config/helm/barelb $$work/chart && \
	sed -i -e 's|repository: ghcr.io/barelb/|repository: $(IMAGE_REGISTRY)/|' -e 's|tag: latest|tag: "$(VERSION)"|' $$work/chart/values.yaml && \
	sed -i 's|^appVersion: .*|appVersion: "$(VERSION)"|' $$work/chart/Chart.yaml && \
	$(BIN)/helm package $$work/chart --destination $(RELEASE_DIR) >/dev/null && \
	echo "$(RELEASE_DIR)/barelb.yaml and the chart $$(ls $(RELEASE_DIR)/*.tgz) ($(VERSION))"

.PHONY: bench
bench: tools ## Speed and memory benchmarks: they print numbers and never fail on speed.
	go test -run='^$$' -bench=. -benchmem ./internal/allocator/
	go test -run='^$$' -bench=Allocation -benchtime=1x -timeout=30m ./e2etest/scale/
	go test -run='^$$' -bench=Conditions -benchtime=1x -timeout=30m ./e2etest/scale/
	go test -run='^$$' -bench=Detection -benchtime=20x ./internal/bfd/

# The side-by-side comparison with MetalLB at full size (see README,
# "Compared with MetalLB"); `make test` runs the same harness small.
COMPARE_ENV ?= BARELB_COMPARE_SERVICES=5000 BARELB_COMPARE_ROUNDS=10
.PHONY: compare
compare: deps tools metallb build ## Run MetalLB, then barelb, in the lab on the same scenarios and print one table (root, an hour or more).
	$(COMPARE_ENV) flock /tmp/barelb-lab.lock go test -count=1 -v -timeout=120m -run='^TestCompare$$' ./e2etest/compare/ | tee $(BIN)/compare.log

.PHONY: deps
deps: ## Install the Debian packages the tests need, when missing.
	@missing=$$(for p in $(DEB_PACKAGES); do dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "installing:" $$missing; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi

# KEEP=1 make demo leaves the lab running until Ctrl-C.
KEEP ?=
.PHONY: demo
demo: deps tools build ## Start a cluster in network namespaces with barelb, get a VIP, curl it, kill its speaker (root).
	KEEP=$(KEEP) go run ./e2etest/cmd/demo

# The demo on real nodes: kubelets and containerd in the namespaces, barelb
# installed from its images with `kubectl apply -k`, a node's death. Not the
# default: the first run on a fresh machine builds the kubelet and installs
# containerd, runc and the CNI plugins (deps), well over `make demo`'s time.
.PHONY: demo-cluster
demo-cluster: deps tools images cluster-base-images ## The demo on real nodes (kubelets, containerd), barelb installed with kubectl apply -k (root).
	KEEP=$(KEEP) go run ./e2etest/cmd/demo --cluster

.PHONY: lab-test
lab-test: deps $(BIN)/etcd $(BIN)/kube-apiserver $(BIN)/kube-proxy $(BIN)/kube-controller-manager ## The lab's own end-to-end tests (root).
	go test $(GO_TEST_FLAGS) -v ./e2etest/lab/

.PHONY: clean
clean: ## Remove built binaries.
	rm -rf $(BIN)
