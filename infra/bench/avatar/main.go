// Command avatar benchmarks gen-avatar's renderer beside the jdenticon npm
// package, in the same run, and prints a Markdown section with the machine
// and a table of avatars per second:
//
//	go run ./infra/bench/avatar
//
// For each size in -sizes, both render -n PNGs of that size for the seeds
// "user-<i>@example.com" on one goroutine or one Node thread (jdenticon's
// toPng is synchronous JavaScript, so one core each), after a warm-up. The
// Go side is the same Renderer the function serves with, PNG encoding
// included; the jdenticon side is render.js beside this file, run by node,
// with its dependencies from package-lock.json (installed with npm ci on
// first use). Each side's first PNG is decoded to check it has the size
// asked for.
package main

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"flag"
	"fmt"
	"image/png"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	genavatar "tidings/functions/gen-avatar"
	"tidings/infra/bench/machine"
)

func main() {
	n := flag.Int("n", 2000, "avatars per renderer and size")
	sizes := flag.String("sizes", "64,256", "comma-separated sizes in pixels")
	dir := flag.String("dir", "infra/bench/avatar", "folder of render.js and package.json")
	node := flag.String("node", "node", "node binary")
	flag.Parse()
	if err := run(*n, *sizes, *dir, *node); err != nil {
		fmt.Fprintln(os.Stderr, "avatar bench:", err)
		os.Exit(1)
	}
}

type result struct {
	renderer string
	size     int
	perSec   float64
	avgBytes int
}

func run(n int, sizeList, dir, node string) error {
	var sizes []int
	for s := range strings.SplitSeq(sizeList, ",") {
		size, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || size < genavatar.MinSize || size > genavatar.MaxSize {
			return fmt.Errorf("size %q: want %d to %d", s, genavatar.MinSize, genavatar.MaxSize)
		}
		sizes = append(sizes, size)
	}
	if err := npmInstall(dir); err != nil {
		return err
	}
	nodeVersion, err := exec.Command(node, "--version").Output()
	if err != nil {
		return fmt.Errorf("node: %w", err)
	}

	var results []result
	for _, size := range sizes {
		g, err := benchGo(n, size)
		if err != nil {
			return fmt.Errorf("gen-avatar %dpx: %w", size, err)
		}
		j, err := benchJdenticon(n, size, dir, node)
		if err != nil {
			return fmt.Errorf("jdenticon %dpx: %w", size, err)
		}
		results = append(results, g, j)
	}

	fmt.Printf("### Avatars: gen-avatar beside jdenticon\n\n")
	fmt.Printf("%s; node %s, jdenticon %s. `go run ./infra/bench/avatar -n %d -sizes %s`, %s. One core each; PNG encoding included.\n\n",
		machine.Describe(), strings.TrimSpace(string(nodeVersion)), jdenticonVersion(dir), n, sizeList,
		time.Now().UTC().Format("2006-01-02 15:04 UTC"))
	fmt.Println("| renderer | size | avatars/s | bytes/avatar | vs jdenticon |")
	fmt.Println("| --- | ---: | ---: | ---: | ---: |")
	for i, r := range results {
		peer := results[i|1] // each size's jdenticon row follows its gen-avatar row
		fmt.Printf("| %s | %d px | %.0f | %d | %.1f× |\n", r.renderer, r.size, r.perSec, r.avgBytes, r.perSec/peer.perSec)
	}
	return nil
}

func seed(i int) string { return "user-" + strconv.Itoa(i) + "@example.com" }

// benchGo renders with the function's own renderer.
func benchGo(n, size int) (result, error) {
	r := genavatar.NewRenderer()
	for i := range min(n, 200) { // warm-up, as on the Node side
		if _, err := r.Render(seed(i), size); err != nil {
			return result{}, err
		}
	}
	total := 0
	start := time.Now()
	for i := range n {
		b, err := r.Render(seed(i), size)
		if err != nil {
			return result{}, err
		}
		total += len(b)
	}
	elapsed := time.Since(start)
	sample, err := r.Render(seed(0), size)
	if err != nil {
		return result{}, err
	}
	if err := checkSize(sample, size); err != nil {
		return result{}, err
	}
	return result{renderer: "gen-avatar (Go)", size: size, perSec: float64(n) / elapsed.Seconds(), avgBytes: total / n}, nil
}

// benchJdenticon runs render.js, which times jdenticon.toPng itself so that
// starting node is not counted.
func benchJdenticon(n, size int, dir, node string) (result, error) {
	cmd := exec.Command(node, "render.js", strconv.Itoa(n), strconv.Itoa(size))
	cmd.Dir = dir
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		return result{}, fmt.Errorf("node render.js: %w", err)
	}
	var r struct {
		Avatars int     `json:"avatars"`
		Seconds float64 `json:"seconds"`
		Bytes   int     `json:"bytes"`
		Sample  string  `json:"sample"`
	}
	if err := json.Unmarshal(out, &r); err != nil {
		return result{}, fmt.Errorf("render.js printed %q: %w", out, err)
	}
	sample, err := base64.StdEncoding.DecodeString(r.Sample)
	if err != nil {
		return result{}, err
	}
	if err := checkSize(sample, size); err != nil {
		return result{}, err
	}
	return result{renderer: "jdenticon (node)", size: size, perSec: float64(r.Avatars) / r.Seconds, avgBytes: r.Bytes / r.Avatars}, nil
}

// checkSize proves a renderer made a PNG of the size asked for.
func checkSize(b []byte, size int) error {
	cfg, err := png.DecodeConfig(bytes.NewReader(b))
	if err != nil {
		return fmt.Errorf("not a PNG: %w", err)
	}
	if cfg.Width != size || cfg.Height != size {
		return fmt.Errorf("PNG is %dx%d, asked for %d", cfg.Width, cfg.Height, size)
	}
	return nil
}

// npmInstall installs render.js's dependencies from the lock file unless
// they are there already.
func npmInstall(dir string) error {
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "jdenticon", "package.json")); err == nil {
		return nil
	}
	cmd := exec.Command("npm", "ci", "--no-audit", "--no-fund")
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("npm ci in %s: %w", dir, err)
	}
	return nil
}

func jdenticonVersion(dir string) string {
	var p struct {
		Version string `json:"version"`
	}
	b, err := os.ReadFile(filepath.Join(dir, "node_modules", "jdenticon", "package.json"))
	if err != nil || json.Unmarshal(b, &p) != nil {
		return "unknown"
	}
	return p.Version
}
