// Package hub downloads model and dataset repositories from the Hugging
// Face Hub, or from a mirror that speaks its HTTP API (HF_ENDPOINT).
package hub

import (
	"context"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"net/http"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Client talks to one Hub endpoint.
type Client struct {
	Endpoint string // e.g. https://huggingface.co; HF_ENDPOINT overrides the default
	Token    string // HF_TOKEN
	HTTP     *http.Client
	Log      io.Writer
	// Stall is how long a request may wait for the server's answer, or a
	// download for its next bytes, before it is abandoned (and retried,
	// resuming where it stopped); 0 means a minute. A mirror that accepts
	// a connection and never answers would otherwise hang the download.
	Stall time.Duration
}

// New returns a Client configured from the environment.
func New() *Client {
	ep := os.Getenv("HF_ENDPOINT")
	if ep == "" {
		ep = "https://huggingface.co"
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSHandshakeTimeout, tr.ResponseHeaderTimeout = 30*time.Second, time.Minute
	return &Client{Endpoint: strings.TrimRight(ep, "/"), Token: os.Getenv("HF_TOKEN"), HTTP: &http.Client{Transport: tr}}
}

func (h *Client) stall() time.Duration {
	if h.Stall > 0 {
		return h.Stall
	}
	return time.Minute
}

// watched is a request context that is cancelled when the server sends
// nothing for Stall: Touch after every read.
type watched struct {
	context.Context
	timer   *time.Timer
	stall   time.Duration
	stalled atomic.Bool
	cancel  context.CancelFunc
}

func (h *Client) watch(ctx context.Context) *watched {
	c, cancel := context.WithCancel(ctx)
	w := &watched{Context: c, stall: h.stall(), cancel: cancel}
	w.timer = time.AfterFunc(w.stall, func() { w.stalled.Store(true); cancel() })
	return w
}

func (w *watched) Touch() { w.timer.Reset(w.stall) }

func (w *watched) Stop() { w.timer.Stop(); w.cancel() }

// explain turns the cancellation of a stalled request into what happened.
func (w *watched) explain(err error, endpoint string) error {
	if err != nil && w.stalled.Load() {
		return fmt.Errorf("no data from %s for %s (a stalled server or mirror)", endpoint, w.stall)
	}
	return err
}

// touchReader reads through, touching the watch at every read.
type touchReader struct {
	r io.Reader
	w *watched
}

func (t touchReader) Read(p []byte) (int, error) {
	n, err := t.r.Read(p)
	t.w.Touch()
	return n, err
}

// RepoFile is one file of a repository listing.
type RepoFile struct {
	Path   string
	Size   int64
	SHA256 string // for LFS files: the content's sha256
	GitOID string // for other files: the git blob id (the Hub's ETag)
}

// DownloadOptions say what to fetch.
type DownloadOptions struct {
	RepoID   string
	RepoType string // model (default) or dataset
	Revision string // default main
	Include  []string
	LocalDir string
	Workers  int
}

func (h *Client) do(ctx context.Context, method, u string, hdr map[string]string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, method, u, nil)
	if err != nil {
		return nil, err
	}
	if h.Token != "" {
		req.Header.Set("Authorization", "Bearer "+h.Token)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	return h.HTTP.Do(req)
}

func (o *DownloadOptions) apiKind() (string, string, error) {
	switch o.RepoType {
	case "", "model":
		return "models", "", nil
	case "dataset":
		return "datasets", "datasets/", nil
	}
	return "", "", fmt.Errorf("RepoType %q: use model or dataset", o.RepoType)
}

// List returns the files of a repository at a revision.
func (h *Client) List(ctx context.Context, o DownloadOptions) ([]RepoFile, error) {
	kind, _, err := o.apiKind()
	if err != nil {
		return nil, err
	}
	rev := o.Revision
	if rev == "" {
		rev = "main"
	}
	u := fmt.Sprintf("%s/api/%s/%s/tree/%s?recursive=true", h.Endpoint, kind, o.RepoID, url.PathEscape(rev))
	var files []RepoFile
	// The listing comes in pages, each naming the next in its Link header.
	for page := 1; u != ""; page++ {
		entries, next, err := h.listPage(ctx, u, o.RepoID, kind, rev)
		if err != nil {
			return nil, fmt.Errorf("listing %s (page %d): %w", o.RepoID, page, err)
		}
		for _, e := range entries {
			if e.Type != "file" {
				continue
			}
			f := RepoFile{Path: e.Path, Size: e.Size, GitOID: e.OID}
			if e.LFS != nil {
				f.SHA256, f.Size = e.LFS.OID, e.LFS.Size
			}
			if len(o.Include) > 0 && !matchAny(o.Include, f.Path) {
				continue
			}
			files = append(files, f)
		}
		u = next
	}
	return files, nil
}

// treeEntry is one entry of the Hub's tree listing.
type treeEntry struct {
	Type string `json:"type"`
	Path string `json:"path"`
	Size int64  `json:"size"`
	OID  string `json:"oid"`
	LFS  *struct {
		OID  string `json:"oid"`
		Size int64  `json:"size"`
	} `json:"lfs"`
}

// listPage fetches one page of a tree listing and the URL of the next
// (from the Link header's rel="next"), or "".
func (h *Client) listPage(ctx context.Context, u, repo, kind, rev string) ([]treeEntry, string, error) {
	w := h.watch(ctx)
	defer w.Stop()
	resp, err := h.do(w, "GET", u, nil)
	if err != nil {
		return nil, "", w.explain(err, h.Endpoint)
	}
	defer resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusOK:
	case http.StatusUnauthorized, http.StatusForbidden:
		return nil, "", fmt.Errorf("%s: the repository is private or gated; set HF_TOKEN", resp.Status)
	case http.StatusNotFound:
		return nil, "", fmt.Errorf("no such %s repository or revision %q at %s", strings.TrimSuffix(kind, "s"), rev, h.Endpoint)
	default:
		return nil, "", errors.New(resp.Status)
	}
	var entries []treeEntry
	if err := json.NewDecoder(touchReader{resp.Body, w}).Decode(&entries); err != nil {
		return nil, "", fmt.Errorf("bad answer from %s: %w", h.Endpoint, w.explain(err, h.Endpoint))
	}
	next := nextLink(resp.Header.Values("Link"))
	if next != "" {
		ref, err := url.Parse(next)
		if err != nil {
			return nil, "", fmt.Errorf("bad Link header %q: %w", next, err)
		}
		next = resp.Request.URL.ResolveReference(ref).String()
	}
	return entries, next, nil
}

// nextLink finds the rel="next" target of Link headers
// (<https://...?cursor=...>; rel="next").
func nextLink(links []string) string {
	for _, l := range links {
		for _, part := range strings.Split(l, ",") {
			target, params, ok := strings.Cut(strings.TrimSpace(part), ";")
			if !ok || !strings.HasPrefix(target, "<") || !strings.HasSuffix(target, ">") {
				continue
			}
			for _, p := range strings.Split(params, ";") {
				if k, v, _ := strings.Cut(strings.TrimSpace(p), "="); k == "rel" && strings.Trim(v, `"`) == "next" {
					return target[1 : len(target)-1]
				}
			}
		}
	}
	return ""
}

func matchAny(globs []string, p string) bool {
	for _, g := range globs {
		if ok, _ := path.Match(g, p); ok {
			return true
		}
		if ok, _ := path.Match(g, path.Base(p)); ok {
			return true
		}
	}
	return false
}

// Download fetches the repository's files into LocalDir, several at once.
// A file is written as PATH.incomplete and renamed when its size (and
// sha256, for LFS files) check out; an interrupted download resumes with
// a Range request. Files already complete are skipped.
func (h *Client) Download(ctx context.Context, o DownloadOptions) ([]RepoFile, error) {
	if o.RepoID == "" || strings.Count(o.RepoID, "/") > 1 {
		return nil, fmt.Errorf("repository id %q: use NAME or OWNER/NAME", o.RepoID)
	}
	if o.LocalDir == "" {
		return nil, errors.New("no LocalDir to download into")
	}
	files, err := h.List(ctx, o)
	if err != nil {
		return nil, err
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("%s: no file matches the Include globs %v", o.RepoID, o.Include)
	}
	workers := max(1, o.Workers)
	jobs := make(chan RepoFile)
	var mu sync.Mutex
	var firstErr error
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for f := range jobs {
				if err := h.fetch(ctx, o, f); err != nil {
					mu.Lock()
					if firstErr == nil {
						firstErr = err
					}
					mu.Unlock()
				}
			}
		}()
	}
	for _, f := range files {
		jobs <- f
	}
	close(jobs)
	wg.Wait()
	return files, firstErr
}

func (h *Client) logf(format string, a ...any) {
	if h.Log != nil {
		fmt.Fprintf(h.Log, format, a...)
	}
}

func (h *Client) fetch(ctx context.Context, o DownloadOptions, f RepoFile) error {
	if strings.Contains(f.Path, "..") || path.IsAbs(f.Path) {
		return fmt.Errorf("refusing file path %q from the server", f.Path)
	}
	dst := filepath.Join(o.LocalDir, filepath.FromSlash(f.Path))
	if st, err := os.Stat(dst); err == nil && st.Size() == f.Size {
		return nil // done before
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	_, prefix, _ := o.apiKind()
	rev := o.Revision
	if rev == "" {
		rev = "main"
	}
	u := fmt.Sprintf("%s/%s%s/resolve/%s/%s", h.Endpoint, prefix, o.RepoID, url.PathEscape(rev), escapePath(f.Path))
	part := dst + ".incomplete"
	start := time.Now()
	for attempt := 0; ; attempt++ {
		err := h.fetchOnce(ctx, u, part, f)
		if err == nil {
			break
		}
		if attempt >= 4 || ctx.Err() != nil || errors.Is(err, errPermanent) {
			return fmt.Errorf("%s: %w", f.Path, err)
		}
		h.logf("%s: %v; retrying\n", f.Path, err)
		time.Sleep(time.Duration(attempt+1) * 200 * time.Millisecond)
	}
	if f.SHA256 != "" || f.GitOID != "" {
		kind, want := "sha256", f.SHA256
		if want == "" {
			kind, want = "git blob id", f.GitOID
		}
		sum, err := fileDigest(part, f.SHA256 == "", f.Size)
		if err != nil {
			return err
		}
		if sum != want {
			os.Remove(part)
			return fmt.Errorf("%s: %s %s, the server lists %s; removed the download", f.Path, kind, sum, want)
		}
	}
	if err := os.Rename(part, dst); err != nil {
		return err
	}
	el := time.Since(start).Seconds()
	h.logf("%s: %d bytes, %.1f MB/s\n", f.Path, f.Size, float64(f.Size)/1e6/max(el, 1e-3))
	return nil
}

var errPermanent = errors.New("permanent")

func escapePath(p string) string {
	parts := strings.Split(p, "/")
	for i, s := range parts {
		parts[i] = url.PathEscape(s)
	}
	return strings.Join(parts, "/")
}

// fetchOnce appends to part what it lacks of the file, resuming with Range.
func (h *Client) fetchOnce(ctx context.Context, u, part string, f RepoFile) error {
	have := int64(0)
	if st, err := os.Stat(part); err == nil {
		have = st.Size()
	}
	if have > f.Size {
		os.Remove(part)
		have = 0
	}
	if have == f.Size && f.Size > 0 {
		return nil
	}
	hdr := map[string]string{}
	if have > 0 {
		hdr["Range"] = fmt.Sprintf("bytes=%d-", have)
	}
	w := h.watch(ctx)
	defer w.Stop()
	resp, err := h.do(w, "GET", u, hdr)
	if err != nil {
		return w.explain(err, h.Endpoint)
	}
	defer resp.Body.Close()
	flags := os.O_CREATE | os.O_WRONLY
	switch {
	case resp.StatusCode == http.StatusPartialContent && have > 0:
		flags |= os.O_APPEND
	case resp.StatusCode == http.StatusOK:
		flags |= os.O_TRUNC // the server ignored Range: start over
		have = 0
	case resp.StatusCode == http.StatusRequestedRangeNotSatisfiable:
		os.Remove(part)
		return errors.New("range not satisfiable; starting over")
	case resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden:
		return fmt.Errorf("%w: %s: set HF_TOKEN for private or gated repositories", errPermanent, resp.Status)
	case resp.StatusCode == http.StatusNotFound:
		return fmt.Errorf("%w: %s", errPermanent, resp.Status)
	default:
		return errors.New(resp.Status)
	}
	out, err := os.OpenFile(part, flags, 0o644)
	if err != nil {
		return err
	}
	// One byte more than the listing promises tells a body that would not end.
	n, err := io.Copy(out, io.LimitReader(touchReader{resp.Body, w}, f.Size-have+1))
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return w.explain(err, h.Endpoint)
	}
	if have+n > f.Size {
		os.Remove(part)
		return fmt.Errorf("%w: the server sends more than the %d bytes the listing gives; removed the download", errPermanent, f.Size)
	}
	if have+n != f.Size {
		return fmt.Errorf("got %d of %d bytes", have+n, f.Size)
	}
	return nil
}

// fileDigest is a file's sha256, or its git blob id (sha1 of
// "blob SIZE\x00" and the content) when gitBlob.
func fileDigest(p string, gitBlob bool, size int64) (string, error) {
	f, err := os.Open(p)
	if err != nil {
		return "", err
	}
	defer f.Close()
	var h hash.Hash
	if gitBlob {
		h = sha1.New()
		fmt.Fprintf(h, "blob %d\x00", size)
	} else {
		h = sha256.New()
	}
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
