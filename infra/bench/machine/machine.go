// Package machine describes the machine a benchmark ran on, for the line
// every benchmark table carries.
package machine

import (
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
)

// Describe returns the CPU model, core count, memory, kernel and Go
// version: "Intel(R) Xeon(R) Processor, 2 CPUs, 23.5 GiB RAM, Linux 6.1, go1.26.8".
func Describe() string {
	cpu := field("/proc/cpuinfo", "model name")
	if cpu == "" {
		cpu = "unknown CPU"
	}
	mem := ""
	if kb, err := strconv.ParseInt(strings.TrimSuffix(field("/proc/meminfo", "MemTotal"), " kB"), 10, 64); err == nil {
		mem = fmt.Sprintf(", %.1f GiB RAM", float64(kb)/(1<<20))
	}
	kernel := ""
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		kernel = ", Linux " + strings.TrimSpace(string(b))
	}
	return fmt.Sprintf("%s, %d CPUs%s%s, %s", cpu, runtime.NumCPU(), mem, kernel, runtime.Version())
}

// field returns the value of the first "name: value" line of a /proc file.
func field(path, name string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	for _, line := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == name {
			return strings.TrimSpace(v)
		}
	}
	return ""
}
