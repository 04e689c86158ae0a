// containerd's snapshotter conformance suite (snapshots/testsuite, containerd 1.6) against thinpool's proxy
// snapshotter. Built offline in GOPATH mode with Debian's golang-go and golang-github-containerd-containerd-dev
// by test/snapshotter/conformance.test.ts, which runs it with -test.root and checks every case's result.
//
// The factory gives each case (they run in parallel) its own pool and its own `thinpool snapshotter serve`
// process, and connects with containerd's proxy client. Its cleanup closes the connection, stops the server with
// SIGTERM (exit status 0 required), then requires `thinpool check` to pass on the pool and no FUSE mount left
// in the server's state directory.
//
// Environment: THINPOOL_NODE (node binary), THINPOOL_CLI (bin/thinpool.js).
package thinpoolsuite

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	snapshotsapi "github.com/containerd/containerd/api/services/snapshots/v1"
	"github.com/containerd/containerd/snapshots"
	"github.com/containerd/containerd/snapshots/proxy"
	"github.com/containerd/containerd/snapshots/testsuite"
	"google.golang.org/grpc"
)

// safeBuffer is a bytes.Buffer written by the child's output copier and read by the test.
type safeBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *safeBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *safeBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func cli(args ...string) *exec.Cmd {
	return exec.Command(os.Getenv("THINPOOL_NODE"), append([]string{os.Getenv("THINPOOL_CLI")}, args...)...)
}

func mountedUnder(dir string) []string {
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil
	}
	var out []string
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) > 4 && strings.HasPrefix(f[4], dir) {
			out = append(out, f[4])
		}
	}
	return out
}

func newSnapshotter(ctx context.Context, root string) (snapshots.Snapshotter, func() error, error) {
	pool := filepath.Join(root, "pool")
	if out, err := cli("init", pool, "--size", "8G").CombinedOutput(); err != nil {
		return nil, nil, fmt.Errorf("thinpool init: %v: %s", err, out)
	}
	sock := filepath.Join(root, "s.sock")
	state := filepath.Join(root, "st")
	server := cli("snapshotter", "serve", pool, "--address", sock, "--state-dir", state, "--fs-size", "64M", "--verbose")
	var stderr safeBuffer
	server.Stderr = &stderr
	stdout, err := server.StdoutPipe()
	if err != nil {
		return nil, nil, err
	}
	if err := server.Start(); err != nil {
		return nil, nil, err
	}
	// Ready once it says so (the socket file exists between bind and listen: its presence is not enough).
	ready := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(stdout)
		signalled := false
		for sc.Scan() {
			if !signalled && strings.Contains(sc.Text(), "serving containerd snapshots") {
				close(ready)
				signalled = true
			}
		}
	}()
	exited := make(chan error, 1)
	go func() { exited <- server.Wait() }()
	select {
	case <-ready:
	case err := <-exited:
		return nil, nil, fmt.Errorf("snapshotter exited before listening: %v: %s", err, stderr.String())
	case <-time.After(120 * time.Second):
		server.Process.Kill()
		return nil, nil, fmt.Errorf("snapshotter did not listen within 120 s: %s", stderr.String())
	}
	conn, err := grpc.Dial("unix://"+sock, grpc.WithInsecure())
	if err != nil {
		server.Process.Kill()
		return nil, nil, err
	}
	sn := proxy.NewSnapshotter(snapshotsapi.NewSnapshotsClient(conn), "thinpool")
	cleanup := func() error {
		conn.Close()
		server.Process.Signal(syscall.SIGTERM)
		var werr error
		select {
		case werr = <-exited:
		case <-time.After(60 * time.Second):
			server.Process.Kill()
			return fmt.Errorf("snapshotter did not stop within 60 s of SIGTERM: %s", stderr.String())
		}
		if werr != nil {
			return fmt.Errorf("snapshotter stopped with %v: %s", werr, stderr.String())
		}
		if m := mountedUnder(state); len(m) > 0 {
			return fmt.Errorf("mounts left after the snapshotter stopped: %v", m)
		}
		if out, err := cli("check", pool).CombinedOutput(); err != nil {
			return fmt.Errorf("thinpool check failed: %v: %s", err, out)
		}
		return nil
	}
	return sn, cleanup, nil
}

func TestThinpool(t *testing.T) {
	if os.Getenv("THINPOOL_CLI") == "" {
		t.Skip("THINPOOL_CLI is not set")
	}
	testsuite.SnapshotterSuite(t, "thinpool", newSnapshotter)
}
