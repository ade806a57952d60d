package main

import (
	"archive/tar"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/ctnet/ctnet/internal/dockertest"
)

// dockerd runs in its own sandbox: its own network namespace and a private
// mount namespace with a fresh /run, its data root on disk in the temp dir
// (dockertest.Daemon: the same command line the tests use).
type dockerd struct {
	sb  *sandbox
	pid int
	d   dockertest.Daemon
	err error
}

func (b *bench) dockerd() (*dockerd, error) {
	if b.dock != nil {
		return b.dock, b.dock.err
	}
	b.dock = b.startDockerd("docker", nil)
	return b.dock, b.dock.err
}

// startDockerd starts a dockerd in a new sandbox, after before (which may
// start what dockerd must find there) and imports bn-busybox.
func (b *bench) startDockerd(name string, before func(d *dockerd)) *dockerd {
	d := &dockerd{}
	d.err = func() (err error) {
		defer func() {
			if r := recover(); r != nil {
				err = fmt.Errorf("%v", r)
			}
		}()
		if err := dockertest.Installed(); err != nil {
			return err
		}
		d.sb = b.sandbox(name, true)
		d.d = dockertest.Daemon{Data: filepath.Join(d.sb.dir, "docker"), Run: d.sb.run}
		if err := d.d.Prepare(); err != nil {
			return err
		}
		if before != nil {
			before(d)
		}
		r := d.sb.must(request{Op: "spawn", Name: "dockerd", Argv: d.d.Argv()})
		d.pid = r.Pid
		run := func(argv ...string) (string, error) {
			res := d.sb.call(request{Op: "exec", Argv: argv})
			if res.Err != "" {
				return res.Out, errors.New(res.Err)
			}
			return res.Out, nil
		}
		if err := d.d.WaitReady(run, 90*time.Second); err != nil {
			log, _ := os.ReadFile(filepath.Join(d.sb.run, "dockerd.log"))
			return fmt.Errorf("%v\ndockerd log (tail): %s", err, tail(string(log), 1500))
		}
		tarPath := filepath.Join(d.sb.dir, "busybox.tar")
		if err := busyboxTar(tarPath); err != nil {
			return err
		}
		d.run("import", tarPath, "bn-busybox:latest")
		return nil
	}()
	return d
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

func (d *dockerd) run(args ...string) response {
	return d.sb.must(request{Op: "exec", Argv: d.d.Docker(args...)})
}

// busyboxTar writes a root filesystem of busybox-static alone: /bin/busybox,
// with true and sh as links to it.
func busyboxTar(path string) error {
	bb, err := os.ReadFile("/bin/busybox")
	if err != nil {
		return fmt.Errorf("busybox-static: %w", err)
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	tw := tar.NewWriter(f)
	now := time.Now()
	hdrs := []*tar.Header{
		{Name: "bin/", Typeflag: tar.TypeDir, Mode: 0o755, ModTime: now},
		{Name: "bin/busybox", Typeflag: tar.TypeReg, Mode: 0o755, Size: int64(len(bb)), ModTime: now},
		{Name: "bin/true", Typeflag: tar.TypeSymlink, Linkname: "busybox", Mode: 0o777, ModTime: now},
		{Name: "bin/sh", Typeflag: tar.TypeSymlink, Linkname: "busybox", Mode: 0o777, ModTime: now},
		{Name: "bin/sleep", Typeflag: tar.TypeSymlink, Linkname: "busybox", Mode: 0o777, ModTime: now},
		{Name: "etc/", Typeflag: tar.TypeDir, Mode: 0o755, ModTime: now},
		{Name: "tmp/", Typeflag: tar.TypeDir, Mode: 0o1777, ModTime: now},
		{Name: "proc/", Typeflag: tar.TypeDir, Mode: 0o555, ModTime: now},
		{Name: "sys/", Typeflag: tar.TypeDir, Mode: 0o555, ModTime: now},
		{Name: "dev/", Typeflag: tar.TypeDir, Mode: 0o755, ModTime: now},
	}
	for _, h := range hdrs {
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		if h.Name == "bin/busybox" {
			if _, err := tw.Write(bb); err != nil {
				return err
			}
		}
	}
	return tw.Close()
}

// ctnetRun prepares a sandbox where `ctnet run` can start containers, or
// says why it cannot.
func (b *bench) ctnetRun(name string) (func(args ...string) response, *sandbox, error) {
	if err := exec.Command(b.ctnet, "run", "--help").Run(); err != nil {
		return nil, nil, fmt.Errorf("this ctnet binary has no `run` command")
	}
	var s *sandbox
	var run func(args ...string) response
	err := func() (err error) {
		defer func() {
			if r := recover(); r != nil {
				err = fmt.Errorf("%v", r)
			}
		}()
		s = b.sandbox(name, true)
		env := b.ctnetEnv(s)
		run = func(args ...string) response {
			return s.must(request{Op: "exec", Argv: append([]string{b.ctnet}, args...), Env: env})
		}
		tarPath := filepath.Join(s.dir, "busybox.tar")
		if err := busyboxTar(tarPath); err != nil {
			return err
		}
		run("image", "import", tarPath, "bn-busybox")
		run("run", "--rm", "--network", "bridge", "bn-busybox", "true")
		return nil
	}()
	return run, s, err
}

// docker measures `run --rm` with and without a network, paired per
// iteration with the order alternating, for docker and (if the binary has
// it) ctnet, interleaved.
func (b *bench) docker() {
	w := &b.report
	d, derr := b.dockerd()
	if derr != nil {
		fmt.Fprintf(w, "dockerd could not run here, so there is no Docker figure: `%s`\n\n", strings.ReplaceAll(derr.Error(), "\n", " ⏎ "))
	} else {
		info := d.run("info", "--format", "{{.ServerVersion}} storage={{.Driver}} cgroup={{.CgroupDriver}}/v{{.CgroupVersion}}")
		fmt.Fprintf(w, "dockerd %s, in its own network namespace with its own data root (on disk), exec root and socket; "+
			"image `bn-busybox` imported from a tarball of busybox-static.\n\n", strings.TrimSpace(info.Out))
		d.run("run", "--rm", "--network", "bridge", "bn-busybox", "true") // warm up
	}
	crun, cs, cerr := b.ctnetRun("ctnet-run")
	if cerr != nil {
		fmt.Fprintf(w, "No `ctnet run` figure: `%s`\n\n", strings.ReplaceAll(cerr.Error(), "\n", " ⏎ "))
	}
	type pair struct{ bridge, none, diff series }
	var dp, cp pair
	measure := func(p *pair, it int, run func(args ...string) response) {
		one := func(net string) time.Duration {
			return time.Duration(run("run", "--rm", "--network", net, "bn-busybox", "true").Ns)
		}
		var tb, tn time.Duration
		if it%2 == 0 {
			tb, tn = one("bridge"), one("none")
		} else {
			tn, tb = one("none"), one("bridge")
		}
		p.bridge.addD(tb)
		p.none.addD(tn)
		p.diff.addD(tb - tn)
	}
	for it := 0; it < b.n; it++ {
		if derr == nil {
			measure(&dp, it, d.run)
		}
		if cerr == nil {
			measure(&cp, it, crun)
		}
	}
	t := &table{head: []string{"tool", "run --network bridge", "run --network none", "network overhead (paired difference)"}}
	t.row("docker", dp.bridge.cell(1), dp.none.cell(1), dp.diff.cell(1))
	t.row("ctnet", cp.bridge.cell(1), cp.none.cell(1), cp.diff.cell(1))
	t.row("docker/ctnet", ratio(&dp.bridge, &cp.bridge), ratio(&dp.none, &cp.none), ratio(&dp.diff, &cp.diff))
	fmt.Fprintf(w, "`run --rm IMAGE true`, whole client process, ms, median (min–max), n = %d pairs; "+
		"the two tools interleaved per iteration.\n\n%s\n", b.n, t)
	if cs != nil {
		b.recordMem("ctnet", "after the runs", cs)
		b.drop(cs)
	}
	if derr != nil {
		panic(derr)
	}
	b.recordMem("docker", "idle, after the runs", d.sb)
}
