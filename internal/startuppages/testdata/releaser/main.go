// Command releaser releases its own start-up pages (startuppages.Release)
// and then keeps working: it runs code and reads data of every kind a Go
// program has (interface tables, type descriptors, reflection, closures,
// maps, goroutines, a collection), which in a PIE or externally linked
// binary sit in the relocated RELRO segment. It prints "ok" and exits 0
// when all of it still works; a release that dropped relocated pages
// crashes it. TestReleaseBuildModes builds and runs it.
package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"reflect"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/barelb/barelb/internal/startuppages"
)

type shape interface{ area() float64 }

type square struct{ side float64 }

func (s square) area() float64 { return s.side * s.side }

type circle struct{ r float64 }

func (c circle) area() float64 { return 3 * c.r * c.r }

type record struct {
	Name  string
	Tags  map[string]int
	Parts []shape
}

func work(round int) (string, error) {
	shapes := []shape{square{2}, circle{1}, square{float64(round)}}
	total := 0.0
	for _, s := range shapes {
		switch v := s.(type) {
		case square:
			total += v.area()
		case circle:
			total += v.area()
		}
	}
	r := record{Name: "r" + strconv.Itoa(round), Tags: map[string]int{"a": 1, "b": round}, Parts: shapes}
	var fields []string
	rt := reflect.TypeOf(r)
	for i := range rt.NumField() {
		fields = append(fields, rt.Field(i).Name+":"+rt.Field(i).Type.String())
	}
	sort.Strings(fields)
	err := fmt.Errorf("round %d: %w", round, fs.ErrNotExist)
	var pathErr *fs.PathError
	if !errors.Is(err, fs.ErrNotExist) || errors.As(err, &pathErr) {
		return "", fmt.Errorf("error chain broken: %v", err)
	}
	return fmt.Sprintf("%v %.1f %s %+v", r.Tags, total, strings.Join(fields, ","), r), nil
}

func main() {
	want, err := work(3)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	covered, err := startuppages.Release()
	if err != nil {
		fmt.Fprintln(os.Stderr, "release:", err)
		os.Exit(1)
	}
	if covered == 0 {
		fmt.Fprintln(os.Stderr, "release covered nothing")
		os.Exit(1)
	}
	var wg sync.WaitGroup
	results := make(chan string, 8)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			got, err := work(3)
			if err != nil {
				got = err.Error()
			}
			results <- got
		}()
	}
	wg.Wait()
	close(results)
	runtime.GC()
	for got := range results {
		if got != want {
			fmt.Fprintf(os.Stderr, "after the release: %q, before: %q\n", got, want)
			os.Exit(1)
		}
	}
	fmt.Printf("ok: released %d bytes of address space\n", covered)
}
