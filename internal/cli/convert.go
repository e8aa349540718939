package cli

import (
	"fmt"
	"io"
	"os"

	"github.com/barelb/barelb/internal/convert"
)

func runConvert(args []string, s Streams) error {
	cmd := newCommand("convert", "convert [-f FILE|-]... [--namespace barelb-system]", s)
	fs := cmd.fs
	files := fs.StringArrayP("filename", "f", nil, "file of MetalLB configuration to read, - for stdin; repeat for several (default: stdin)")
	namespace := fs.String("namespace", convert.DefaultNamespace, "namespace of the barelb objects written")
	if err := cmd.parse(args); err != nil {
		return err
	}
	if len(*files) == 0 {
		*files = []string{"-"}
	}
	var sources []convert.Source
	for _, f := range *files {
		src, err := readSource(f, s.In)
		if err != nil {
			return err
		}
		sources = append(sources, src)
	}
	res, err := convert.Convert(sources, convert.Options{Namespace: *namespace})
	if err != nil {
		return err
	}
	for _, w := range res.Warnings {
		fmt.Fprintf(s.Err, "warning: %s\n", w)
	}
	return res.WriteYAML(s.Out)
}

func readSource(name string, stdin io.Reader) (convert.Source, error) {
	if name == "-" {
		data, err := io.ReadAll(stdin)
		if err != nil {
			return convert.Source{}, fmt.Errorf("reading stdin: %w", err)
		}
		return convert.Source{Name: "stdin", Data: data}, nil
	}
	data, err := os.ReadFile(name)
	if err != nil {
		return convert.Source{}, fmt.Errorf("reading MetalLB configuration: %w", err)
	}
	return convert.Source{Name: name, Data: data}, nil
}
