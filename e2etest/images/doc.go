// Package images opens the container images `make images` writes
// (bin/images/*.oci.tar: OCI image-layout tarballs holding a
// multi-platform index) the way a runtime would — index, manifests,
// configs, layers, every blob checked against its digest — and runs each
// platform's entrypoint with --version: natively for amd64, under
// qemu-user for arm64.
package images
