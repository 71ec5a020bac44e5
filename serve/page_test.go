package serve

import (
	"context"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"zhllama/internal/testenv"
)

// browser starts a headless Chromium for one test, or stops the test (see
// testenv.Need) when there is none.
func browser(t *testing.T) context.Context {
	t.Helper()
	path, err := exec.LookPath("chromium")
	if err != nil {
		if path, err = exec.LookPath("chromium-browser"); err != nil {
			testenv.Need(t, "chromium", "install Debian's chromium (apt-get install chromium)")
		}
	}
	actx, cancelA := chromedp.NewExecAllocator(context.Background(), chromedp.ExecPath(path),
		chromedp.Flag("headless", true), chromedp.NoSandbox, chromedp.DisableGPU, chromedp.Flag("disable-quic", true),
		chromedp.NoFirstRun, chromedp.Flag("disable-background-networking", true), chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true), chromedp.UserDataDir(t.TempDir()))
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(func() { cancel(); cancelA() })
	return ctx
}

// The web page in a real browser: a message typed and sent streams the
// model's answer into the page as text (markup escaped), the conversation
// survives a reload through localStorage, and Stop aborts an answer and
// frees its slot.
func TestWebPage(t *testing.T) {
	ctx := browser(t)
	s, hs := testServer(t, nil)
	if err := chromedp.Do(ctx, chromedp.Navigate(hs.URL)); err != nil {
		t.Fatal(err)
	}
	step, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	msg := "你好 <b>x</b>"
	err := chromedp.Do(step,
		chromedp.WaitVisible(chromedp.ID("text")),
		chromedp.SetValue(chromedp.ID("temperature"), "0"),
		chromedp.SetValue(chromedp.ID("max_tokens"), "20"),
		chromedp.SendKeys(chromedp.ID("text"), msg),
	)
	if err != nil {
		t.Fatal(err)
	}
	// Count the answer's updates as they arrive.
	if _, err := chromedp.Run(step, chromedp.Evaluate[bool](`window.updates = 0; new MutationObserver((rs) => { window.updates += rs.length; })
		.observe(document.getElementById("log"), {childList: true, subtree: true, characterData: true}); true`)); err != nil {
		t.Fatal(err)
	}
	if err := chromedp.Do(step, chromedp.Click(chromedp.ID("send"))); err != nil {
		t.Fatal(err)
	}
	// Done when the answer is written and Send is enabled again.
	if _, err := chromedp.Run(step, chromedp.Poll[bool](`document.getElementById("answer") !== null && !document.getElementById("send").disabled`,
		chromedp.WithPollingTimeout(30*time.Second))); err != nil {
		t.Fatal(err)
	}
	answer, err := chromedp.Run(step, chromedp.Evaluate[string](`document.getElementById("answer").firstChild ? document.getElementById("answer").firstChild.textContent : ""`))
	if err != nil {
		t.Fatal(err)
	}
	ids, err := s.o.Renderer.Encode(parseTestMessages(t, `[{"role":"user","content":"你好 <b>x</b>"}]`))
	if err != nil {
		t.Fatal(err)
	}
	want, _ := greedy(t, s, ids, 20)
	if answer != want {
		t.Errorf("the page shows %q, the model writes %q", answer, want)
	}
	if n, err := chromedp.Run(step, chromedp.Evaluate[int](`window.updates`)); err != nil || n < 4 {
		t.Errorf("the answer was written in %d updates (%v): not streamed", n, err)
	}
	bold, err := chromedp.Run(step, chromedp.Evaluate[int](`document.querySelectorAll("#log b").length`))
	if err != nil || bold != 0 {
		t.Errorf("markup in a message became elements (%d <b>): %v", bold, err)
	}
	errText, _ := chromedp.Run(step, chromedp.Text(chromedp.ID("error")))
	if strings.TrimSpace(errText) != "" {
		t.Errorf("the page shows an error: %s", errText)
	}

	// The conversation is kept across a reload.
	if err := chromedp.Do(step, chromedp.Reload(), chromedp.WaitVisible(chromedp.ID("text"))); err != nil {
		t.Fatal(err)
	}
	kept, err := chromedp.Run(step, chromedp.Evaluate[string](`Array.from(document.querySelectorAll("#log .msg")).map(d => d.textContent).join("|")`))
	if err != nil || !strings.HasPrefix(kept, msg+"|"+want) {
		t.Errorf("after a reload the log is %q (%v)", kept, err)
	}

	// Stop aborts the request: the engine is held so that the answer is
	// still pending when Stop is clicked; once let go it drops the request.
	hold := make(chan struct{})
	go s.e.Do(context.Background(), func() { <-hold })
	err = chromedp.Do(step,
		chromedp.SendKeys(chromedp.ID("text"), "讲个长故事"),
		chromedp.Click(chromedp.ID("send")),
	)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := chromedp.Run(step, chromedp.Poll[bool](`!document.getElementById("stop").disabled`, chromedp.WithPollingTimeout(10*time.Second))); err != nil {
		t.Fatal(err)
	}
	if err := chromedp.Do(step, chromedp.Click(chromedp.ID("stop"))); err != nil {
		t.Fatal(err)
	}
	if _, err := chromedp.Run(step, chromedp.Poll[bool](`!document.getElementById("send").disabled`, chromedp.WithPollingTimeout(10*time.Second))); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond)
	close(hold)
	deadline := time.Now().Add(5 * time.Second)
	for s.e.stats.processing.Load() != 0 || s.e.stats.deferred.Load() != 0 {
		if time.Now().After(deadline) {
			t.Fatal("the request is still held after Stop")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if errText, _ := chromedp.Run(step, chromedp.Text(chromedp.ID("error"))); strings.TrimSpace(errText) != "" {
		t.Errorf("Stop shows an error: %s", errText)
	}
}
