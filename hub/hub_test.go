package hub

import (
	"context"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// fakeHub serves a repository the way the Hub's API does: a tree listing,
// resolve URLs, LFS files redirected to a CDN path, Range requests.
type fakeHub struct {
	files      map[string][]byte
	lfs        map[string]bool
	token      string
	cutFirst   atomic.Bool // cut the first LFS download halfway
	rangeCalls atomic.Int32
}

func (f *fakeHub) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if f.token != "" && r.Header.Get("Authorization") != "Bearer "+f.token {
		http.Error(w, "unauthorized", http.StatusUnauthorized)
		return
	}
	switch {
	case r.URL.Path == "/api/models/org/repo/tree/main":
		var list []map[string]any
		for p, b := range f.files {
			e := map[string]any{"type": "file", "path": p, "size": len(b)}
			if f.lfs[p] {
				sum := sha256.Sum256(b)
				e["lfs"] = map[string]any{"oid": hex.EncodeToString(sum[:]), "size": len(b)}
			} else {
				h := sha1.New()
				fmt.Fprintf(h, "blob %d\x00", len(b))
				h.Write(b)
				e["oid"] = hex.EncodeToString(h.Sum(nil))
			}
			list = append(list, e)
		}
		list = append(list, map[string]any{"type": "directory", "path": "sub"})
		json.NewEncoder(w).Encode(list)
	case strings.HasPrefix(r.URL.Path, "/org/repo/resolve/main/"):
		p := strings.TrimPrefix(r.URL.Path, "/org/repo/resolve/main/")
		if f.lfs[p] {
			http.Redirect(w, r, "/cdn/"+p, http.StatusFound)
			return
		}
		f.serve(w, r, p)
	case strings.HasPrefix(r.URL.Path, "/cdn/"):
		f.serve(w, r, strings.TrimPrefix(r.URL.Path, "/cdn/"))
	default:
		http.NotFound(w, r)
	}
}

func (f *fakeHub) serve(w http.ResponseWriter, r *http.Request, p string) {
	b, ok := f.files[p]
	if !ok {
		http.NotFound(w, r)
		return
	}
	start := 0
	if rg := r.Header.Get("Range"); rg != "" {
		f.rangeCalls.Add(1)
		start, _ = strconv.Atoi(strings.TrimSuffix(strings.TrimPrefix(rg, "bytes="), "-"))
		w.Header().Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", start, len(b)-1, len(b)))
		w.Header().Set("Content-Length", strconv.Itoa(len(b)-start))
		w.WriteHeader(http.StatusPartialContent)
		w.Write(b[start:])
		return
	}
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	if f.lfs[p] && f.cutFirst.CompareAndSwap(true, false) {
		w.Write(b[:len(b)/2])
		w.(http.Flusher).Flush()
		panic(http.ErrAbortHandler) // the connection drops mid-file
	}
	w.Write(b)
}

func TestDownloadResumesAndChecks(t *testing.T) {
	big := make([]byte, 3<<20)
	for i := range big {
		big[i] = byte(i * 7)
	}
	fh := &fakeHub{
		files: map[string][]byte{"config.json": []byte(`{"a":1}`), "model.safetensors": big, "sub/dir/tokenizer.model": []byte("tok")},
		lfs:   map[string]bool{"model.safetensors": true},
		token: "secret",
	}
	fh.cutFirst.Store(true)
	srv := httptest.NewServer(fh)
	defer srv.Close()
	t.Setenv("HF_ENDPOINT", srv.URL+"/")
	t.Setenv("HF_TOKEN", "secret")
	h := New()
	dir := t.TempDir()
	files, err := h.Download(context.Background(), DownloadOptions{RepoID: "org/repo", LocalDir: dir, Workers: 3})
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != 3 {
		t.Errorf("%d files", len(files))
	}
	for p, want := range fh.files {
		got, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(p)))
		if err != nil || string(got) != string(want) {
			t.Errorf("%s: %d bytes, %v", p, len(got), err)
		}
	}
	if fh.rangeCalls.Load() == 0 {
		t.Error("the interrupted download was not resumed with Range")
	}
	if _, err := os.Stat(filepath.Join(dir, "model.safetensors.incomplete")); err == nil {
		t.Error("a partial file was left")
	}
	// Only what Include asks for.
	dir2 := t.TempDir()
	files, err = h.Download(context.Background(), DownloadOptions{RepoID: "org/repo", LocalDir: dir2, Include: []string{"*.json"}})
	if err != nil || len(files) != 1 || files[0].Path != "config.json" {
		t.Errorf("include: %v %v", files, err)
	}
	// A wrong token and an unknown repository give clear errors.
	h.Token = "wrong"
	if _, err := h.Download(context.Background(), DownloadOptions{RepoID: "org/repo", LocalDir: dir2}); err == nil || !strings.Contains(err.Error(), "HF_TOKEN") {
		t.Errorf("bad token: %v", err)
	}
	h.Token = "secret"
	if _, err := h.Download(context.Background(), DownloadOptions{RepoID: "org/none", LocalDir: dir2}); err == nil || !strings.Contains(err.Error(), "no such model") {
		t.Errorf("unknown repo: %v", err)
	}
}

func TestDownloadRejectsCorruptFiles(t *testing.T) {
	fh := &fakeHub{files: map[string][]byte{"model.bin": []byte("good content")}, lfs: map[string]bool{"model.bin": true}}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/cdn/") {
			w.Write([]byte("evil content")) // same size, other bytes
			return
		}
		fh.ServeHTTP(w, r)
	}))
	defer srv.Close()
	h := &Client{Endpoint: srv.URL, HTTP: srv.Client()}
	dir := t.TempDir()
	_, err := h.Download(context.Background(), DownloadOptions{RepoID: "org/repo", LocalDir: dir})
	if err == nil || !strings.Contains(err.Error(), "sha256") {
		t.Errorf("corrupt download: %v", err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("left %v", entries)
	}
}

// A server that never answers, or stops sending mid-file, ends in an error
// that says so after a bounded wait (resuming with Range in between); a
// body longer than the listing is cut off and refused.
func TestStalledAndOversizedDownloads(t *testing.T) {
	body := make([]byte, 100000)
	fh := &fakeHub{files: map[string][]byte{"a.bin": body, "big.json": []byte("{}")}}
	var mode atomic.Value
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch m, _ := mode.Load().(string); {
		case m == "silent":
			<-r.Context().Done() // accepts, never answers
			return
		case m == "slowbody" && strings.HasSuffix(r.URL.Path, "a.bin"):
			w.Header().Set("Content-Length", "100000")
			w.Write(body[:1000])
			w.(http.Flusher).Flush()
			<-r.Context().Done()
			return
		case m == "endless" && strings.HasSuffix(r.URL.Path, "big.json"):
			for i := 0; i < 1000 && r.Context().Err() == nil; i++ {
				w.Write(make([]byte, 1<<16))
			}
			return
		}
		fh.ServeHTTP(w, r)
	}))
	defer srv.Close()
	h := &Client{Endpoint: srv.URL, HTTP: srv.Client(), Stall: 100 * time.Millisecond}
	for _, m := range []string{"silent", "slowbody"} {
		mode.Store(m)
		dir := t.TempDir()
		start := time.Now()
		_, err := h.Download(context.Background(), DownloadOptions{RepoID: "org/repo", LocalDir: dir, Include: []string{"a.bin"}})
		if err == nil || !strings.Contains(err.Error(), "no data from") || time.Since(start) > 20*time.Second {
			t.Errorf("%s: %v after %s", m, err, time.Since(start))
		}
	}
	mode.Store("endless")
	dir := t.TempDir()
	_, err := h.Download(context.Background(), DownloadOptions{RepoID: "org/repo", LocalDir: dir, Include: []string{"big.json"}})
	if err == nil || !strings.Contains(err.Error(), "more than the 2 bytes") {
		t.Errorf("endless body: %v", err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("left %v", entries)
	}
}

// A tree listing in pages is followed to its last page.
func TestListFollowsPages(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("cursor") == "" {
			w.Header().Set("Link", `<`+r.URL.Path+`?recursive=true&cursor=2>; rel="next"`)
			json.NewEncoder(w).Encode([]map[string]any{{"type": "file", "path": "page1.json", "size": 2, "oid": "x"}})
			return
		}
		json.NewEncoder(w).Encode([]map[string]any{{"type": "file", "path": "page2.json", "size": 2, "oid": "y"}})
	}))
	defer srv.Close()
	h := &Client{Endpoint: srv.URL, HTTP: srv.Client()}
	files, err := h.List(context.Background(), DownloadOptions{RepoID: "org/repo"})
	if err != nil || len(files) != 2 || files[1].Path != "page2.json" {
		t.Errorf("listing: %v, %v", files, err)
	}
	if got := nextLink([]string{`<https://hub/a?cursor=3>; rel="next", <https://hub/a>; rel="first"`}); got != "https://hub/a?cursor=3" {
		t.Errorf("nextLink: %q", got)
	}
}
