package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/bufbuild/protocompile"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/pluginpb"
)

// plugins collects the -plugin flags.
type plugins []string

func (p *plugins) String() string     { return strings.Join(*p, ",") }
func (p *plugins) Set(v string) error { *p = append(*p, v); return nil }

func main() {
	var ps plugins
	flag.Var(&ps, "plugin", "NAME=PARAMETER: run protoc-gen-NAME (as a go tool) with PARAMETER; repeatable")
	flag.Parse()
	if len(ps) == 0 || flag.NArg() == 0 {
		fmt.Fprintln(os.Stderr, "usage: protogen -plugin NAME=PARAMETER... FILE.proto...")
		os.Exit(2)
	}
	if err := run(ps, flag.Args()); err != nil {
		fmt.Fprintln(os.Stderr, "protogen:", err)
		os.Exit(1)
	}
}

func run(ps plugins, files []string) error {
	descs, err := compile(files)
	if err != nil {
		return err
	}
	for _, p := range ps {
		name, param, _ := strings.Cut(p, "=")
		req := &pluginpb.CodeGeneratorRequest{FileToGenerate: files, ProtoFile: descs}
		if param != "" {
			req.Parameter = proto.String(param)
		}
		if err := runPlugin(name, req); err != nil {
			return err
		}
	}
	return nil
}

// compile compiles files and returns them with every file they import,
// each after its imports, as a CodeGeneratorRequest lists them.
func compile(files []string) ([]*descriptorpb.FileDescriptorProto, error) {
	c := protocompile.Compiler{
		Resolver:       protocompile.WithStandardImports(&protocompile.SourceResolver{ImportPaths: []string{"."}}),
		SourceInfoMode: protocompile.SourceInfoStandard, // comments, for the generated code's doc comments
	}
	compiled, err := c.Compile(context.Background(), files...)
	if err != nil {
		return nil, err
	}
	var out []*descriptorpb.FileDescriptorProto
	seen := make(map[string]bool)
	var add func(f protoreflect.FileDescriptor)
	add = func(f protoreflect.FileDescriptor) {
		if seen[f.Path()] {
			return
		}
		seen[f.Path()] = true
		imps := f.Imports()
		for i := range imps.Len() {
			add(imps.Get(i).FileDescriptor)
		}
		out = append(out, protodesc.ToFileDescriptorProto(f))
	}
	for _, f := range compiled {
		add(f)
	}
	return out, nil
}

// runPlugin runs protoc-gen-NAME on req and writes the files it returns.
func runPlugin(name string, req *pluginpb.CodeGeneratorRequest) error {
	in, err := proto.Marshal(req)
	if err != nil {
		return err
	}
	var stdout, stderr bytes.Buffer
	cmd := exec.Command("go", "tool", "protoc-gen-"+name)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = bytes.NewReader(in), &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("protoc-gen-%s: %w: %s", name, err, strings.TrimSpace(stderr.String()))
	}
	resp := new(pluginpb.CodeGeneratorResponse)
	if err := proto.Unmarshal(stdout.Bytes(), resp); err != nil {
		return fmt.Errorf("protoc-gen-%s: bad response: %w", name, err)
	}
	if resp.Error != nil {
		return fmt.Errorf("protoc-gen-%s: %s", name, resp.GetError())
	}
	for _, f := range resp.File {
		if f.GetInsertionPoint() != "" {
			return errors.New("protoc-gen-" + name + ": insertion points are not supported")
		}
		if err := writeFile(f.GetName(), f.GetContent()); err != nil {
			return err
		}
	}
	return nil
}

// writeFile writes a generated file, refusing a path that leaves the
// current directory.
func writeFile(name, content string) error {
	clean := filepath.Clean(filepath.FromSlash(name))
	if filepath.IsAbs(clean) || strings.HasPrefix(clean, "..") {
		return fmt.Errorf("plugin returned a file outside the directory: %q", name)
	}
	if err := os.MkdirAll(filepath.Dir(clean), 0o755); err != nil {
		return err
	}
	return os.WriteFile(clean, []byte(content), 0o644)
}
