package main

import (
	"archive/tar"
	"encoding/json"
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
	var rn series // runc alone, ctnet's bundle, network none
	runcRun, rerr := func() (func(i int) time.Duration, error) {
		if cerr != nil {
			return nil, cerr
		}
		return runcAlone(cs, crun)
	}()
	if rerr != nil && cerr == nil {
		fmt.Fprintf(w, "No `runc run` figure: `%s`\n\n", strings.ReplaceAll(rerr.Error(), "\n", " ⏎ "))
	}
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
		if rerr == nil {
			rn.addD(runcRun(it))
		}
	}
	t := &table{head: []string{"tool", "run --network bridge", "run --network none", "network overhead (paired difference)"}}
	t.row("docker", dp.bridge.cell(1), dp.none.cell(1), dp.diff.cell(1))
	t.row("ctnet", cp.bridge.cell(1), cp.none.cell(1), cp.diff.cell(1))
	t.row("docker/ctnet", ratio(&dp.bridge, &cp.bridge), ratio(&dp.none, &cp.none), ratio(&dp.diff, &cp.diff))
	t.row("`runc run` alone, ctnet's bundle", "", rn.cell(1), "")
	t.row("ctnet/runc", ratio(&cp.bridge, &rn), ratio(&cp.none, &rn), "")
	fmt.Fprintf(w, "`run --rm IMAGE true`, whole client process, ms, median (min–max), n = %d pairs; "+
		"the tools interleaved per iteration. `runc run` alone: the OCI runtime ctnet calls, with the bundle `ctnet run` "+
		"wrote (its overlay root, mounts, seccomp profile, capabilities), the command `true`, a new network namespace "+
		"and no network: the floor of `ctnet run --network none`.\n\n%s\n", b.n, t)
	if cs != nil {
		b.recordMem("ctnet", "after the runs", cs)
		b.drop(cs)
	}
	if derr != nil {
		panic(derr)
	}
	b.recordMem("docker", "idle, after the runs", d.sb)
}

// runcAlone prepares, in the ctnet sandbox, a bundle made from the one
// `ctnet run` writes (a detached container is started to get it) and
// returns a function that times `runc run` of it, whole process, once per
// call with a fresh container id.
func runcAlone(s *sandbox, run func(args ...string) response) (func(i int) time.Duration, error) {
	run("run", "-d", "--network", "none", "--name", "bnrunc", "bn-busybox", "sleep", "3600")
	dir := filepath.Join(s.run, "ctnet", "containers")
	out := s.exec("sh", "-c", "ls -d "+dir+"/*/config.json")
	cfgPath := strings.TrimSpace(out.Out)
	if strings.Contains(cfgPath, "\n") || cfgPath == "" {
		return nil, fmt.Errorf("want one container bundle in %s, found %q", dir, cfgPath)
	}
	var spec map[string]any
	if err := json.Unmarshal([]byte(s.exec("cat", cfgPath).Out), &spec); err != nil {
		return nil, fmt.Errorf("%s: %w", cfgPath, err)
	}
	proc, _ := spec["process"].(map[string]any)
	linux, _ := spec["linux"].(map[string]any)
	if proc == nil || linux == nil {
		return nil, fmt.Errorf("%s: no process or linux section", cfgPath)
	}
	proc["args"] = []string{"true"}
	proc["terminal"] = false
	delete(spec, "hooks")
	// New namespaces (the running container's network and IPC ones are
	// its own) and a cgroup of its own.
	var nss []map[string]any
	for _, n := range linux["namespaces"].([]any) {
		m := n.(map[string]any)
		delete(m, "path")
		nss = append(nss, m)
	}
	linux["namespaces"] = nss
	if cg, ok := linux["cgroupsPath"].(string); ok {
		linux["cgroupsPath"] = filepath.Join(filepath.Dir(cg), "bn-runc") // beside ctnet's, removed by runc after each run
	}
	b, err := json.Marshal(spec)
	if err != nil {
		return nil, err
	}
	bundle := filepath.Join(s.run, "bn-runc-bundle")
	s.exec("mkdir", "-p", bundle)
	s.must(request{Op: "exec", Argv: []string{"sh", "-c", "cat > " + bundle + "/config.json"}, Stdin: string(b)})
	root := filepath.Join(s.run, "bn-runc-root")
	return func(i int) time.Duration {
		return time.Duration(s.exec("runc", "--root", root, "run", "--bundle", bundle, fmt.Sprintf("bn-runc-%d", i)).Ns)
	}, nil
}
