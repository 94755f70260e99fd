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

// TimeWait counts the TCP sockets in TIME_WAIT whose local or remote port
// is port, from /proc/net/tcp and tcp6: the connections to (or of) a
// server on that port closed in the last minute rather than kept.
func TimeWait(port int) (int, error) {
	const timeWait = "06" // include/net/tcp_states.h
	n := 0
	for _, table := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		b, err := os.ReadFile(table)
		if err != nil {
			return 0, err
		}
		lines := strings.Split(strings.TrimSpace(string(b)), "\n")
		for _, line := range lines[1:] {
			f := strings.Fields(line) // sl local_address rem_address st ...
			if len(f) < 4 || f[3] != timeWait {
				continue
			}
			if hexPort(f[1]) == port || hexPort(f[2]) == port {
				n++
			}
		}
	}
	return n, nil
}

// hexPort is the port of a /proc/net/tcp address ("0100007F:1F90").
func hexPort(addr string) int {
	_, p, _ := strings.Cut(addr, ":")
	v, err := strconv.ParseInt(p, 16, 32)
	if err != nil {
		return -1
	}
	return int(v)
}
