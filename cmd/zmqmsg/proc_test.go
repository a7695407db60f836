package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// childEnv makes this test binary run the CLI's main instead of the tests
// (see TestMain): spawn runs the CLI as a real process, with real signals
// and exit codes, without a go build.
const childEnv = "ZQTEST_RUN_MAIN"

// cliDir returns a directory with "zmqmsg" in it: a link to this test
// binary, which is the CLI when childEnv is set.
func cliDir(t *testing.T) string {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := os.Symlink(exe, filepath.Join(dir, "zmqmsg")); err != nil {
		t.Fatal(err)
	}
	return dir
}

// proc is a child process: the CLI, or a shell that runs it.
type proc struct {
	cmd            *exec.Cmd
	stdout, stderr *lines
	done           chan struct{} // closed when it has exited
	code           int           // its exit code, once done is closed
}

// spawn runs "zmqmsg args..." as a process with env added to the test's
// environment; it is killed when the test ends if it still runs.
func spawn(t *testing.T, env map[string]string, args ...string) *proc {
	t.Helper()
	return startProc(t, exec.Command(filepath.Join(cliDir(t), "zmqmsg"), args...), env)
}

// shell runs script with sh -c; "zmqmsg" is on its PATH.
func shell(t *testing.T, env map[string]string, script string) *proc {
	t.Helper()
	env2 := map[string]string{"PATH": cliDir(t) + ":" + os.Getenv("PATH")}
	for k, v := range env {
		env2[k] = v
	}
	return startProc(t, exec.Command("sh", "-c", script), env2)
}

func startProc(t *testing.T, cmd *exec.Cmd, env map[string]string) *proc {
	t.Helper()
	p := &proc{cmd: cmd, stdout: newLines(), stderr: newLines(), done: make(chan struct{})}
	cmd.Env = append(os.Environ(), childEnv+"=1")
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	cmd.Stdout, cmd.Stderr = p.stdout, p.stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		_ = cmd.Wait() // the exit code is in ProcessState
		p.code = cmd.ProcessState.ExitCode()
		close(p.done)
	}()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			_ = cmd.Process.Kill()
			<-p.done
		}
	})
	return p
}

// signal sends sig to the process.
func (p *proc) signal(t *testing.T, sig syscall.Signal) {
	t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		t.Fatalf("signal %v: %v", sig, err)
	}
}

// wait waits up to d for the process to exit and returns its exit code.
func (p *proc) wait(t *testing.T, d time.Duration) int {
	t.Helper()
	select {
	case <-p.done:
		return p.code
	case <-time.After(d):
		t.Fatalf("%v did not exit within %v\nstdout: %s\nstderr: %s", p.cmd.Args, d, p.stdout.String(), p.stderr.String())
		return -1
	}
}
