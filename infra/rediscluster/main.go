// Command rediscluster starts a throwaway Redis Cluster on loopback from
// the installed redis-server, runs a command with TIDINGS_TEST_REDIS_URL
// (and REDIS_URL) naming it, and removes the cluster when the command
// ends:
//
//	go run ./infra/rediscluster -- go test ./gateway-ws/jobs/
//
// Without a command it prints the URL and keeps the cluster up until
// interrupted.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"syscall"

	"tidings/infra/proc"
)

func main() {
	masters := flag.Int("masters", 3, "master nodes")
	replicas := flag.Int("replicas", 1, "replicas of each master")
	flag.Parse()
	code, err := run(*masters, *replicas, flag.Args())
	if err != nil {
		fmt.Fprintln(os.Stderr, "rediscluster:", err)
		code = 1
	}
	os.Exit(code)
}

func run(masters, replicas int, command []string) (int, error) {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	dir, err := os.MkdirTemp("", "tidings-redis-cluster-")
	if err != nil {
		return 1, err
	}
	defer os.RemoveAll(dir)
	c, err := proc.StartRedisCluster(ctx, dir, masters, replicas)
	if err != nil {
		return 1, err
	}
	defer c.Stop()
	fmt.Fprintf(os.Stderr, "rediscluster: %d masters, %d replicas each: %s\n", masters, replicas, c.URL())
	if len(command) == 0 {
		fmt.Println(c.URL())
		<-ctx.Done()
		return 0, nil
	}
	env := []string{"TIDINGS_TEST_REDIS_URL=" + c.URL(), "REDIS_URL=" + c.URL()}
	err = proc.Command(env, command[0], command[1:]...).Run()
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		return exit.ExitCode(), nil
	}
	if err != nil {
		return 1, err
	}
	return 0, nil
}
