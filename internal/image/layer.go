package image

import (
	"bufio"
	"bytes"
	"compress/bzip2"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"

	"github.com/klauspost/compress/zstd"
	"github.com/vbatts/tar-split/tar/asm"
	"github.com/vbatts/tar-split/tar/storage"
)

// tarSplitSuffix names, next to a layer directory, the layer tar's headers
// and padding as tar-split records them (Docker keeps the same): with the
// unpacked files they rebuild the very tar the layer came from, so a saved
// image keeps its diff ids and so its id.
const tarSplitSuffix = ".tar-split.gz"

type layerInfo struct {
	Size    int64 // bytes of the regular files
	TarSize int64 // bytes of the layer tar
}

func (s *Store) readLayerInfo(diffID string) (layerInfo, bool) {
	var li layerInfo
	b, err := os.ReadFile(s.layerDir(diffID) + ".json")
	return li, err == nil && json.Unmarshal(b, &li) == nil
}

// ensureLayer unpacks a layer once per diff id: into a temp dir, then renamed
// into place, so a crash never leaves a half layer under its real name.
// open gives the uncompressed layer tar.
func (s *Store) ensureLayer(diffID string, open func() (io.ReadCloser, error)) (int64, error) {
	dst := s.layerDir(diffID)
	info, haveInfo := s.readLayerInfo(diffID)
	_, dirErr := os.Stat(dst)
	inPlace := haveInfo && dirErr == nil
	if _, err := os.Stat(dst + tarSplitSuffix); inPlace && err == nil && info.TarSize > 0 {
		return info.Size, nil
	}
	tmp, err := os.MkdirTemp(filepath.Join(s.dir, "tmp"), "layer-")
	if err != nil {
		return 0, fmt.Errorf("layer %s: %w", diffID, err)
	}
	defer os.RemoveAll(tmp)
	rc, err := open()
	if err != nil {
		return 0, fmt.Errorf("layer %s: %w", diffID, err)
	}
	defer rc.Close()
	root := filepath.Join(tmp, "root")
	consume := func(r io.Reader) (int64, error) {
		if inPlace {
			// a layer in use (maybe mounted) that only lacks its tar metadata: read it, leave the files
			_, err := io.Copy(io.Discard, r)
			return info.Size, err
		}
		if err := os.Mkdir(root, 0o755); err != nil {
			return 0, err
		}
		return unpackLayer(root, r)
	}
	meta := filepath.Join(tmp, "tar-split.gz")
	size, tarSize, digest, err := captureLayer(rc, meta, consume)
	if err != nil {
		return 0, fmt.Errorf("layer %s: %w", diffID, err)
	}
	if digest != diffID {
		return 0, fmt.Errorf("layer %s: content has digest %s", diffID, digest)
	}
	if err := os.Rename(meta, dst+tarSplitSuffix); err != nil {
		return 0, fmt.Errorf("layer %s: %w", diffID, err)
	}
	if err := writeFileAtomic(dst+".json", layerInfo{Size: size, TarSize: tarSize}); err != nil {
		return 0, err
	}
	if !inPlace {
		os.RemoveAll(dst) // an orphan from an interrupted run, not recorded anywhere
		if err := os.Rename(root, dst); err != nil {
			return 0, fmt.Errorf("layer %s: %w", diffID, err)
		}
	}
	return size, nil
}

// captureLayer hands the layer tar r to consume while tar-split records its
// metadata in the file meta, and returns what consume returned, the tar's
// length and its digest, which covers the whole stream (padding included).
func captureLayer(r io.Reader, meta string, consume func(io.Reader) (int64, error)) (size, tarSize int64, digest string, err error) {
	f, err := os.OpenFile(meta, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return 0, 0, "", err
	}
	defer f.Close()
	mw := &lockedWriter{w: gzip.NewWriter(f)}
	h := sha256.New()
	n := &counter{}
	packer := &dupPacker{Packer: storage.NewJSONPacker(mw), seen: map[string]bool{}}
	stream, err := asm.NewInputTarStream(io.TeeReader(r, io.MultiWriter(h, n)), packer, nil)
	if err != nil {
		return 0, 0, "", err
	}
	size, err = consume(stream)
	// Read to the end either way: the digest covers the padding after the
	// tar, and tar-split's reader must finish before anything is closed.
	if _, cerr := io.Copy(io.Discard, stream); err == nil {
		err = cerr
	}
	if cerr := mw.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = f.Sync()
	}
	if err != nil {
		var dup *duplicateError
		if errors.As(err, &dup) {
			err = dup
		}
		return 0, 0, "", err
	}
	return size, n.n, "sha256:" + hex.EncodeToString(h.Sum(nil)), nil
}

// dupPacker refuses a path named twice with the error unpackLayer gives,
// before tar-split's packer refuses it with a message naming nothing.
type dupPacker struct {
	storage.Packer
	seen map[string]bool
}

func (p *dupPacker) AddEntry(e storage.Entry) (int, error) {
	if e.Type == storage.FileType {
		name := e.GetName()
		if rel, err := cleanEntryName(name); err == nil {
			if p.seen[rel] {
				return -1, &duplicateError{name}
			}
			p.seen[rel] = true
		}
	}
	return p.Packer.AddEntry(e)
}

type lockedWriter struct {
	mu     sync.Mutex
	w      *gzip.Writer
	closed bool
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return 0, os.ErrClosed
	}
	return l.w.Write(p)
}

func (l *lockedWriter) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return nil
	}
	l.closed = true
	return l.w.Close()
}

type counter struct{ n int64 }

func (c *counter) Write(p []byte) (int, error) { c.n += int64(len(p)); return len(p), nil }

// writeLayerTar writes the tar a layer was unpacked from, rebuilt from its
// files and tar-split metadata, and checks its digest (after writing: a
// mismatch means the files changed on disk).
func (s *Store) writeLayerTar(w io.Writer, diffID string) error {
	dst := s.layerDir(diffID)
	f, err := os.Open(dst + tarSplitSuffix)
	if err != nil {
		return fmt.Errorf("layer %s: %w", diffID, err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		return fmt.Errorf("layer %s: tar metadata: %w", diffID, err)
	}
	root, err := os.OpenRoot(dst)
	if err != nil {
		return fmt.Errorf("layer %s: %w", diffID, err)
	}
	defer root.Close()
	h := sha256.New()
	if err := asm.WriteOutputTarStream(rootGetter{root}, storage.NewJSONUnpacker(zr), io.MultiWriter(w, h)); err != nil {
		return fmt.Errorf("layer %s: rebuild tar: %w", diffID, err)
	}
	if got := "sha256:" + hex.EncodeToString(h.Sum(nil)); got != diffID {
		return fmt.Errorf("layer %s: the rebuilt tar has digest %s; its files changed on disk", diffID, got)
	}
	return nil
}

// rootGetter reads file contents for tar-split from inside a layer.
type rootGetter struct{ root *os.Root }

func (g rootGetter) Get(name string) (io.ReadCloser, error) {
	rel, err := cleanEntryName(name)
	if err != nil {
		return nil, err
	}
	return g.root.Open(rel)
}

// decompress undoes the compression Docker recognises on archives and
// layers (gzip, bzip2, zstd); anything else passes as it is.
func decompress(r io.Reader) (io.ReadCloser, error) {
	br := bufio.NewReader(r)
	magic, _ := br.Peek(6)
	switch {
	case bytes.HasPrefix(magic, []byte{0x1f, 0x8b}):
		return gzip.NewReader(br)
	case bytes.HasPrefix(magic, []byte{0x28, 0xb5, 0x2f, 0xfd}):
		zr, err := zstd.NewReader(br)
		if err != nil {
			return nil, err
		}
		return zr.IOReadCloser(), nil
	case bytes.HasPrefix(magic, []byte("BZh")):
		return io.NopCloser(bzip2.NewReader(br)), nil
	case bytes.HasPrefix(magic, []byte{0xfd, '7', 'z', 'X', 'Z', 0}):
		return nil, errors.New("xz compression is not supported; decompress it first (xz -d)")
	}
	return io.NopCloser(br), nil
}
