package convert

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation"
	"sigs.k8s.io/yaml"

	barelbv1beta1 "github.com/barelb/barelb/api/v1beta1"
)

// DefaultNamespace is the namespace barelb runs in unless told otherwise.
const DefaultNamespace = "barelb-system"

// Options change what Convert writes.
type Options struct {
	// Namespace the barelb objects are written to; DefaultNamespace when
	// empty. Configuration counts only in barelb's own namespace.
	Namespace string
}

// Source is one input: a file's name (for messages) and its content, one
// or more YAML documents.
type Source struct {
	Name string
	Data []byte
}

// Warning is something that could not be carried over as it was.
type Warning struct {
	// Object is the input object, like "BGPPeer tor" or
	// "ConfigMap metallb-system/config".
	Object string
	// Field is the path of the field in the input object, like
	// "spec.vrf" or "peers[0].password"; empty for the whole object.
	Field string
	// Message says what happened and what to do.
	Message string
}

func (w Warning) String() string {
	if w.Field == "" {
		return w.Object + ": " + w.Message
	}
	return w.Object + ": " + w.Field + ": " + w.Message
}

// Result is the converted configuration.
type Result struct {
	// Objects are barelb's objects (and Secrets for BGP passwords), in the
	// order they should be applied: profiles and communities before the
	// peers and advertisements that name them.
	Objects []map[string]interface{}
	// Warnings name everything that was not carried over as it was.
	Warnings []Warning
}

// WriteYAML writes the objects as YAML documents separated by "---".
func (r *Result) WriteYAML(w io.Writer) error {
	var buf bytes.Buffer
	for i, obj := range r.Objects {
		if i > 0 {
			buf.WriteString("---\n")
		}
		data, err := yaml.Marshal(obj)
		if err != nil {
			return fmt.Errorf("encoding %s %s: %w", obj["kind"], nestedName(obj), err)
		}
		buf.Write(data)
	}
	if _, err := w.Write(buf.Bytes()); err != nil {
		return fmt.Errorf("writing the converted configuration: %w", err)
	}
	return nil
}

func nestedName(obj map[string]interface{}) string {
	if m, ok := obj["metadata"].(map[string]interface{}); ok {
		if n, ok := m["name"].(string); ok {
			return n
		}
	}
	return ""
}

// Convert reads MetalLB configuration from the sources and returns barelb's
// equivalent. An error means the input could not be read (malformed YAML,
// an object of a kind it does not convert, a value MetalLB itself would
// refuse); it names the source, the document and the object.
func Convert(sources []Source, opts Options) (*Result, error) {
	if opts.Namespace == "" {
		opts.Namespace = DefaultNamespace
	}
	if errs := validation.IsDNS1123Label(opts.Namespace); len(errs) > 0 {
		return nil, fmt.Errorf("namespace %q: %s", opts.Namespace, strings.Join(errs, "; "))
	}
	c := &converter{opts: opts, names: map[string]bool{}}
	var docs []document
	for _, src := range sources {
		d, err := readDocuments(src)
		if err != nil {
			return nil, err
		}
		docs = append(docs, d...)
	}
	if len(docs) == 0 {
		return nil, errors.New("the input holds no objects")
	}
	// Objects with names of their own first, so that the names made up for
	// legacy pools and peers steer clear of them.
	var legacy []document
	for _, d := range docs {
		if isLegacy(d) {
			legacy = append(legacy, d)
			continue
		}
		if err := c.convertObject(d); err != nil {
			return nil, err
		}
	}
	for _, d := range legacy {
		if err := c.convertObject(d); err != nil {
			return nil, err
		}
	}
	c.resolveSecrets()
	c.checkReferences()
	return c.result()
}

// document is one object of the input.
type document struct {
	source string
	line   int
	// path locates an item of a List, like "items[2]".
	path string
	obj  map[string]interface{}
}

func (d document) where() string {
	s := fmt.Sprintf("%s:%d", d.source, d.line)
	if d.path != "" {
		s += " " + d.path
	}
	return s
}

var separator = regexp.MustCompile(`^---(\s.*)?$`)

// readDocuments splits a source into its YAML documents and decodes each,
// unwrapping Lists.
func readDocuments(src Source) ([]document, error) {
	var docs []document
	lines := strings.SplitAfter(string(src.Data), "\n")
	start := 0
	flush := func(end int) error {
		text := strings.Join(lines[start:end], "")
		first := start + 1
		start = end + 1
		var obj interface{}
		if err := yaml.Unmarshal([]byte(text), &obj); err != nil {
			return fmt.Errorf("%s:%d: the document starting here is not valid YAML: %w", src.Name, first, err)
		}
		if obj == nil {
			return nil // empty, or only comments
		}
		m, ok := obj.(map[string]interface{})
		if !ok {
			return fmt.Errorf("%s:%d: the document starting here is a %s, not a Kubernetes object", src.Name, first, kindOfValue(obj))
		}
		items, err := unwrapList(document{source: src.Name, line: first, obj: m})
		if err != nil {
			return err
		}
		docs = append(docs, items...)
		return nil
	}
	for i, l := range lines {
		if separator.MatchString(strings.TrimRight(l, "\r\n")) {
			if err := flush(i); err != nil {
				return nil, err
			}
		}
	}
	if err := flush(len(lines)); err != nil {
		return nil, err
	}
	return docs, nil
}

func kindOfValue(v interface{}) string {
	switch v.(type) {
	case []interface{}:
		return "list"
	case string:
		return "string"
	default:
		return fmt.Sprintf("%T", v)
	}
}

// unwrapList returns the items of a List (kind List, or FooList), or the
// document itself.
func unwrapList(d document) ([]document, error) {
	apiVersion, _ := d.obj["apiVersion"].(string)
	kind, _ := d.obj["kind"].(string)
	if apiVersion == "" || kind == "" {
		return nil, fmt.Errorf("%s: the object has no apiVersion or kind; is this a Kubernetes manifest?", d.where())
	}
	if !strings.HasSuffix(kind, "List") {
		return []document{d}, nil
	}
	raw, ok := d.obj["items"]
	if !ok || raw == nil {
		return nil, nil
	}
	items, ok := raw.([]interface{})
	if !ok {
		return nil, fmt.Errorf("%s: %s: items is not a list", d.where(), kind)
	}
	var out []document
	for i, it := range items {
		m, ok := it.(map[string]interface{})
		if !ok {
			return nil, fmt.Errorf("%s: %s: items[%d] is a %s, not an object", d.where(), kind, i, kindOfValue(it))
		}
		path := fmt.Sprintf("items[%d]", i)
		if d.path != "" {
			path = d.path + "." + path
		}
		nested, err := unwrapList(document{source: d.source, line: d.line, path: path, obj: m})
		if err != nil {
			return nil, err
		}
		out = append(out, nested...)
	}
	return out, nil
}

func isLegacy(d document) bool {
	apiVersion, _ := d.obj["apiVersion"].(string)
	kind, _ := d.obj["kind"].(string)
	return (apiVersion == "v1" && kind == "ConfigMap") || kind == "AddressPool"
}

// Kinds lists what Convert reads, for messages.
const Kinds = "metallb.io IPAddressPool, L2Advertisement, BGPAdvertisement, BGPPeer, BFDProfile, Community and AddressPool; " +
	"MetalLB's legacy ConfigMap (data.config); Secrets that BGPPeers name; Lists of these"

// converter collects the output while the documents are read.
type converter struct {
	opts     Options
	warnings []Warning
	// names are the kind/name pairs written so far.
	names map[string]bool

	bfdProfiles []*barelbv1beta1.BFDProfile
	communities []*barelbv1beta1.Community
	secrets     []*corev1.Secret
	peers       []*barelbv1beta1.BGPPeer
	pools       []*barelbv1beta1.IPAddressPool
	l2Advs      []*barelbv1beta1.L2Advertisement
	bgpAdvs     []*barelbv1beta1.BGPAdvertisement

	// inputSecrets are the Secrets of the input, by namespace/name.
	inputSecrets []inputSecret
	// secretRefs are the Secrets the input's BGPPeers name.
	secretRefs []secretRef
}

type inputSecret struct {
	id        string // namespace/name, or name
	namespace string
	secret    *corev1.Secret
}

type secretRef struct {
	object    string // the peer, for messages
	field     string
	name      string
	namespace string
}

func (c *converter) warn(object, field, format string, args ...interface{}) {
	c.warnings = append(c.warnings, Warning{Object: object, Field: field, Message: fmt.Sprintf(format, args...)})
}

// claim records a kind/name pair, failing on a second object of the same
// kind and name.
func (c *converter) claim(kind, name string) error {
	key := kind + "/" + name
	if c.names[key] {
		return fmt.Errorf("two %s objects would be named %q; rename one of them in the input", kind, name)
	}
	c.names[key] = true
	return nil
}

// unique returns base, or base-2, base-3 ... whichever is free for kind, and
// claims it.
func (c *converter) unique(kind, base string) string {
	name := base
	for i := 2; c.names[kind+"/"+name]; i++ {
		name = fmt.Sprintf("%s-%d", base, i)
	}
	c.names[kind+"/"+name] = true
	return name
}

func (c *converter) meta(name string, labels, annotations map[string]string) metav1.ObjectMeta {
	return metav1.ObjectMeta{Name: name, Namespace: c.opts.Namespace, Labels: labels, Annotations: annotations}
}

// result turns the collected objects into plain maps, without status and
// the empty fields a typed object always carries.
func (c *converter) result() (*Result, error) {
	res := &Result{Warnings: c.warnings}
	var objs []runtime.Object
	for _, o := range c.bfdProfiles {
		objs = append(objs, o)
	}
	for _, o := range c.communities {
		objs = append(objs, o)
	}
	for _, o := range c.secrets {
		objs = append(objs, o)
	}
	for _, o := range c.peers {
		objs = append(objs, o)
	}
	for _, o := range c.pools {
		objs = append(objs, o)
	}
	for _, o := range c.l2Advs {
		objs = append(objs, o)
	}
	for _, o := range c.bgpAdvs {
		objs = append(objs, o)
	}
	for _, o := range objs {
		m, err := runtime.DefaultUnstructuredConverter.ToUnstructured(o)
		if err != nil {
			return nil, fmt.Errorf("encoding %T: %w", o, err)
		}
		delete(m, "status")
		if meta, ok := m["metadata"].(map[string]interface{}); ok {
			delete(meta, "creationTimestamp")
		}
		if spec, ok := m["spec"].(map[string]interface{}); ok && len(spec) == 0 {
			delete(m, "spec")
		}
		res.Objects = append(res.Objects, m)
	}
	if len(res.Objects) == 0 {
		return nil, errors.New("the input holds no MetalLB configuration to convert")
	}
	return res, nil
}
