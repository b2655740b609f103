package test

// The harness of the browser tests: Debian's Chromium, driven by chromedp, looks at the
// pages as a person would (types into forms, clicks buttons by their text, reads the text
// on the screen), and checks what a person cannot see: that no JavaScript dialog opened
// (injected script ran) and what axe-core says of the page's accessibility.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"
)

const (
	// chromiumPath is Debian's package; chromedp's own search would also find a Chrome
	// installed by hand, which CI does not have.
	chromiumPath = "/usr/bin/chromium"
	// axePath is where `npm ci --prefix test/browser` puts axe-core (the tests run in test/).
	axePath = "browser/node_modules/axe-core/axe.min.js"

	// A fixed window, so that screenshots and layout do not depend on the machine.
	browserWidth  = 1280
	browserHeight = 800
	// A phone held upright, for the narrow screenshot.
	narrowWidth  = 390
	narrowHeight = 844

	// browserLifetime bounds a whole browser test: Chromium is killed when it ends.
	browserLifetime = 3 * time.Minute
	// actionTimeout bounds one step (a navigation, a click, an axe run). Chromium's first
	// start on a busy 2-core machine has been seen to take several seconds, so it is
	// generous; a step that waits for something that never comes still fails in bounded time.
	actionTimeout = 45 * time.Second
)

// screenshotsEnv names the folder where the browser tests save the screenshots that
// docs/web.md shows (`make screenshots` sets it to docs/web). Unset, screenshots go to the
// test's temporary folder and are only checked.
const screenshotsEnv = "DESKGATE_SCREENSHOTS"

// needChromium skips a browser test where Chromium is missing, except in CI, where
// .ci/run installs it and a missing browser must not pass as a skipped test.
func needChromium(t *testing.T) {
	t.Helper()
	if _, err := os.Stat(chromiumPath); err == nil {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s is missing in CI: .ci/run must install the Debian package chromium", chromiumPath)
	}
	t.Skipf("%s not installed (apt-get install chromium); .ci/run installs it", chromiumPath)
}

// browserTab is one tab of a headless Chromium that belongs to one test. Its methods fail
// the test on any error, so that a page test reads as the steps a person takes.
type browserTab struct {
	t   *testing.T
	ctx context.Context // the tab's chromedp context

	mu      sync.Mutex
	dialogs []string // "alert: message", in the order they opened
}

// startBrowser starts a headless Chromium for t and returns its first tab, at the fixed
// window size. Chromium and every process it started are gone when the test ends.
func startBrowser(t *testing.T) *browserTab {
	t.Helper()
	needChromium(t)

	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromiumPath),
		chromedp.Headless,
		chromedp.DisableGPU,
		chromedp.WindowSize(browserWidth, browserHeight),
		// One language whatever the machine's locale, for the pages and for axe-core.
		chromedp.Flag("lang", "en-US"),
	)
	if os.Geteuid() == 0 {
		// Chromium refuses to start its sandbox as root, and CI runs as root.
		opts = append(opts, chromedp.NoSandbox)
	}
	lifetime, cancelLifetime := context.WithTimeout(context.Background(), browserLifetime)
	if d, ok := t.Deadline(); ok && time.Until(d) < browserLifetime {
		cancelLifetime()
		// End Chromium before `go test -timeout` does, so that its panic does not leave
		// the browser behind.
		lifetime, cancelLifetime = context.WithDeadline(context.Background(), d.Add(-5*time.Second))
	}
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(lifetime, opts...)
	ctx, cancelCtx := chromedp.NewContext(allocCtx)
	// Cleanups run last in, first out: the tab, then the browser (whose cancel waits for
	// Chromium and its children to exit), then the deadline.
	t.Cleanup(cancelLifetime)
	t.Cleanup(cancelAlloc)
	t.Cleanup(cancelCtx)

	start := time.Now()
	// The first action starts Chromium; its life is bound to ctx, not to a step's timeout.
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("starting %s: %v", chromiumPath, err)
	}
	t.Logf("chromium started in %v", time.Since(start).Round(time.Millisecond))
	return newBrowserTab(t, ctx)
}

// newPerson opens a tab in a new browser context of the same Chromium: its own cookies and
// storage, so a second person (the requester beside the agent) is signed in separately.
func (b *browserTab) newPerson() *browserTab {
	b.t.Helper()
	ctx, cancel := chromedp.NewContext(b.ctx, chromedp.WithNewBrowserContext())
	b.t.Cleanup(cancel)
	if err := chromedp.Do(ctx); err != nil {
		b.t.Fatalf("opening a tab in a new browser context: %v", err)
	}
	return newBrowserTab(b.t, ctx)
}

func newBrowserTab(t *testing.T, ctx context.Context) *browserTab {
	t.Helper()
	b := &browserTab{t: t, ctx: ctx}
	// Listen sees the tab's events in order, in the loop that reads them, so a dialog that
	// opened before any later command's reply is recorded by the time that reply arrives.
	if err := chromedp.Listen(ctx, func(ev any) {
		if ev, ok := ev.(*page.EventJavascriptDialogOpening); ok {
			b.mu.Lock()
			b.dialogs = append(b.dialogs, fmt.Sprintf("%s: %s", ev.Type, ev.Message))
			b.mu.Unlock()
		}
	}); err != nil {
		t.Fatalf("listening for JavaScript dialogs: %v", err)
	}
	// A dialog stops the page until someone answers it, which would hang the step that
	// caused it; dismiss each one, from outside the event loop (Listen may not send
	// commands), so the test goes on and reports the dialog instead of a timeout.
	opened := chromedp.Events(ctx, page.JavascriptDialogOpening)
	go func() {
		for _, err := range opened {
			if err != nil {
				return
			}
			// An error here means the tab is going away; nothing is left to unblock.
			_, _ = chromedp.Call(ctx, page.HandleJavaScriptDialog, page.HandleJavaScriptDialogParams{Accept: false})
		}
	}()
	b.setViewport(browserWidth, browserHeight, false)
	return b
}

// step runs one bounded action on the tab and fails the test with what was being done.
func step[T any](b *browserTab, what string, a chromedp.Action[T]) T {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, actionTimeout)
	defer cancel()
	v, err := chromedp.Run(ctx, a)
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			err = fmt.Errorf("nothing after %v: %w", actionTimeout, err)
		}
		b.t.Fatalf("%s: %v", what, err)
	}
	return v
}

// Navigate opens url and waits for it to load; it returns the HTTP status of the page.
func (b *browserTab) Navigate(url string) int {
	b.t.Helper()
	resp := step(b, "navigate to "+url, chromedp.NavigateResponse(url))
	if resp == nil {
		return 0
	}
	return int(resp.Status)
}

// URL is the address of the page the tab shows now.
func (b *browserTab) URL() string {
	b.t.Helper()
	return step(b, "read the address", chromedp.Location())
}

// Text is the page's text as a person reads it (innerText: hidden elements left out).
func (b *browserTab) Text() string {
	b.t.Helper()
	return step(b, "read the page text", chromedp.Evaluate[string](`document.body ? document.body.innerText : ""`))
}

// HTML is the page's markup as the browser holds it now, for what text does not show
// (an address in an attribute, a hidden input).
func (b *browserTab) HTML() string {
	b.t.Helper()
	return step(b, "read the page markup", chromedp.Evaluate[string](`document.documentElement.outerHTML`))
}

// jsFinders defines, in the page, how a person finds a form field and a button: a field by
// its label's text, its aria-label or its name; a button or link by the text it shows or
// its aria-label (what a screen reader says). Whitespace is folded as a reader sees it.
const jsFinders = `
const norm = s => (s || "").replace(/\s+/g, " ").trim();
const labelText = l => {
	const c = l.cloneNode(true);
	c.querySelectorAll("input, select, textarea").forEach(e => e.remove());
	return norm(c.textContent);
};
const fields = () => [...document.querySelectorAll("input:not([type=hidden]), textarea, select")];
const findFields = key => {
	const k = norm(key);
	const m = new Set();
	document.querySelectorAll("label").forEach(l => { if (labelText(l) === k && l.control) m.add(l.control); });
	fields().forEach(f => { if (f.name === key || norm(f.getAttribute("aria-label")) === k) m.add(f); });
	return [...m];
};
const describeFields = () => fields().map(f => {
	const l = f.labels && f.labels.length ? labelText(f.labels[0]) : norm(f.getAttribute("aria-label"));
	return (l ? JSON.stringify(l) + " " : "") + "name=" + JSON.stringify(f.name);
});
const clickableName = e => norm(e.getAttribute("aria-label") || (e.tagName === "INPUT" ? e.value : e.innerText));
const clickables = (scope, kind) => {
	const root = scope ? document.querySelector(scope) : document;
	if (!root) return [];
	const sel = kind === "link" ? "a[href]" : "button, input[type=submit], input[type=button]";
	return [...root.querySelectorAll(sel)];
};
`

// jsCall is an expression that runs fn (a function of jsFinders) on the given arguments.
func jsCall(fn string, args ...any) string {
	enc := make([]string, len(args))
	for i, a := range args {
		j, err := json.Marshal(a)
		if err != nil {
			panic(err)
		}
		enc[i] = string(j)
	}
	return "(() => {" + jsFinders + "\nreturn (" + fn + ")(" + strings.Join(enc, ", ") + ");\n})()"
}

// Fill types value into the one form field whose label reads field (or whose aria-label
// or name is field), after clearing it; a select gets the option with that value.
func (b *browserTab) Fill(field, value string) {
	b.t.Helper()
	n := step(b, "look for field "+field, chromedp.Evaluate[int](jsCall(`k => findFields(k).length`, field)))
	if n != 1 {
		have := step(b, "list the fields", chromedp.Evaluate[[]string](jsCall(`() => describeFields()`)))
		b.t.Fatalf("fill %q: %d fields have that label or name on %s; the page has: %s",
			field, n, b.URL(), strings.Join(have, "; "))
	}
	sel := chromedp.JSPath(jsCall(`k => findFields(k)[0]`, field))
	tag := step(b, "read field "+field, chromedp.Evaluate[string](jsCall(`k => findFields(k)[0].tagName`, field)))
	if tag == "SELECT" {
		step(b, "choose "+value+" in "+field, chromedp.SetValue(sel, value))
		return
	}
	// chromedp.Clear fails on an empty textarea (no text node to remove), so the old value
	// goes as a script would take it away; the new one is typed, key by key.
	step(b, "clear field "+field, chromedp.Evaluate[chromedp.Void](jsCall(`k => {
		const f = findFields(k)[0];
		f.value = "";
		f.dispatchEvent(new Event("input", {bubbles: true}));
	}`, field)))
	step(b, "type into field "+field, chromedp.SendKeys(sel, value))
}

// ClickButton clicks the one button that reads text (or has it as aria-label) and waits
// for the page it leads to; it returns that page's HTTP status. Every button on deskgate's
// pages submits a form, so a click always loads a page.
func (b *browserTab) ClickButton(text string) int {
	b.t.Helper()
	return b.click("", "button", text)
}

// ClickButtonIn is ClickButton among the buttons inside the first element that matches
// the CSS selector scope, for a page with one "Remove" button per row.
func (b *browserTab) ClickButtonIn(scope, text string) int {
	b.t.Helper()
	return b.click(scope, "button", text)
}

// FollowLink clicks the one link that reads text and returns the HTTP status of the page
// it leads to.
func (b *browserTab) FollowLink(text string) int {
	b.t.Helper()
	return b.click("", "link", text)
}

func (b *browserTab) click(scope, kind, text string) int {
	b.t.Helper()
	what := fmt.Sprintf("%s %q", kind, text)
	if scope != "" {
		what += " in " + scope
	}
	n := step(b, "look for "+what, chromedp.Evaluate[int](jsCall(
		`(s, k, t) => clickables(s, k).filter(e => clickableName(e) === norm(t)).length`, scope, kind, text)))
	if n != 1 {
		have := step(b, "list the "+kind+"s", chromedp.Evaluate[[]string](jsCall(
			`(s, k) => clickables(s, k).map(clickableName)`, scope, kind)))
		b.t.Fatalf("click %s: %d match on %s; the %ss there read: %q", what, n, b.URL(), kind, have)
	}
	sel := chromedp.JSPath(jsCall(
		`(s, k, t) => clickables(s, k).filter(e => clickableName(e) === norm(t))[0]`, scope, kind, text))
	ctx, cancel := context.WithTimeout(b.ctx, actionTimeout)
	defer cancel()
	resp, err := chromedp.RunResponse(ctx, chromedp.Click(sel))
	if err != nil {
		b.t.Fatalf("click %s and wait for the next page: %v", what, err)
	}
	if resp == nil {
		return 0
	}
	return int(resp.Status)
}

// setViewport sets the size of the page's viewport; mobile makes Chromium lay the page
// out as a phone does (the page's meta viewport is honoured).
func (b *browserTab) setViewport(width, height int64, mobile bool) {
	b.t.Helper()
	opts := []chromedp.EmulateViewportOption{chromedp.EmulatePortrait}
	if width > height {
		opts[0] = chromedp.EmulateLandscape
	}
	if mobile {
		opts = append(opts, chromedp.EmulateMobile)
	}
	step(b, fmt.Sprintf("set the viewport to %dx%d", width, height), chromedp.EmulateViewport(width, height, opts...))
}

// Narrow makes the tab a phone's width (390x844), for the second screenshot of a page;
// Wide goes back to the desktop window. Either reloads nothing: take the screenshot after.
func (b *browserTab) Narrow() {
	b.t.Helper()
	b.setViewport(narrowWidth, narrowHeight, true)
}

// Wide restores the fixed desktop viewport that startBrowser sets.
func (b *browserTab) Wide() {
	b.t.Helper()
	b.setViewport(browserWidth, browserHeight, false)
}

// Screenshot saves the whole page, not only the part in the viewport, as a PNG at path
// (folders made as needed), at one image pixel per CSS pixel.
func (b *browserTab) Screenshot(path string) {
	b.t.Helper()
	size := step(b, "measure the page", chromedp.Evaluate[[2]float64](
		`[document.documentElement.scrollWidth, document.documentElement.scrollHeight]`))
	shot := func(ctx context.Context, t *chromedp.Target) ([]byte, error) {
		res, err := cdp.Call(ctx, t, page.CaptureScreenshot, page.CaptureScreenshotParams{
			Format:                page.CaptureScreenshotFormatPng,
			Clip:                  &page.Viewport{Width: size[0], Height: size[1], Scale: 1},
			CaptureBeyondViewport: new(true),
			FromSurface:           new(true),
		})
		return res.Data, err
	}
	png := step(b, "take a screenshot", chromedp.Action[[]byte](shot))
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		b.t.Fatal(err)
	}
	if err := os.WriteFile(path, png, 0o644); err != nil {
		b.t.Fatal(err)
	}
}

// screenshotPath is where a screenshot called name goes: into $DESKGATE_SCREENSHOTS when
// it is set (a relative folder is taken from the repository's root, as `make` runs), else
// into the test's temporary folder.
func screenshotPath(t *testing.T, name string) string {
	t.Helper()
	dir := os.Getenv(screenshotsEnv)
	if dir == "" {
		return filepath.Join(t.TempDir(), name)
	}
	if !filepath.IsAbs(dir) {
		dir = filepath.Join("..", dir)
	}
	return filepath.Join(dir, name)
}

// Dialogs are the JavaScript dialogs (alert, confirm, prompt, beforeunload) that opened in
// the tab so far, as "type: message". deskgate's pages open none, so any is script that a
// mail or a name smuggled in.
func (b *browserTab) Dialogs() []string {
	b.t.Helper()
	// One round trip: the events before its reply have been through the listener.
	step(b, "reach the page", chromedp.Evaluate[chromedp.Void](`0`))
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]string(nil), b.dialogs...)
}

// NoDialogs fails the test when any JavaScript dialog opened in the tab.
func (b *browserTab) NoDialogs() {
	b.t.Helper()
	if d := b.Dialogs(); len(d) > 0 {
		b.t.Errorf("script ran in the page (JavaScript dialogs opened): %q", d)
	}
}

// axeViolation is one axe-core rule that the page breaks, with the elements that break it.
type axeViolation struct {
	ID      string    `json:"id"`
	Impact  string    `json:"impact"`
	Help    string    `json:"help"`
	HelpURL string    `json:"helpUrl"`
	Nodes   []axeNode `json:"nodes"`
}

type axeNode struct {
	HTML    string   `json:"html"`
	Target  []string `json:"target"`
	Summary string   `json:"summary"`
}

func (v axeViolation) String() string {
	var s strings.Builder
	fmt.Fprintf(&s, "%s (%s): %s <%s>", v.ID, v.Impact, v.Help, v.HelpURL)
	for _, n := range v.Nodes {
		fmt.Fprintf(&s, "\n    %s at %s\n      %s", n.HTML, strings.Join(n.Target, " "),
			strings.ReplaceAll(n.Summary, "\n", "\n      "))
	}
	return s.String()
}

var axeSource = sync.OnceValues(func() (string, error) {
	src, err := os.ReadFile(axePath)
	return string(src), err
})

// Axe runs axe-core on the page as it is now and returns the violations a person relying
// on assistive technology would be stopped by: those of impact serious or critical.
func (b *browserTab) Axe() []axeViolation {
	b.t.Helper()
	src, err := axeSource()
	if err != nil {
		if os.Getenv("CI") == "true" {
			b.t.Fatalf("axe-core is missing in CI: .ci/run must run npm ci --prefix test/browser: %v", err)
		}
		b.t.Skipf("axe-core not installed (npm ci --prefix test/browser): %v", err)
	}
	// Evaluated through the DevTools protocol, not a <script> element, so the page's CSP
	// (no inline script) neither stops it nor has to be loosened for it.
	loaded := step(b, "look for axe-core", chromedp.Evaluate[bool](`typeof window.axe === "object"`))
	if !loaded {
		step(b, "load axe-core", chromedp.Evaluate[chromedp.Void](src))
	}
	return step(b, "run axe-core", chromedp.Evaluate[[]axeViolation](`(async () => {
	const r = await axe.run(document, {resultTypes: ["violations"]});
	return r.violations
		.filter(v => v.impact === "serious" || v.impact === "critical")
		.map(v => ({
			id: v.id, impact: v.impact, help: v.help, helpUrl: v.helpUrl,
			nodes: v.nodes.map(n => ({html: n.html, target: n.target.map(String), summary: n.failureSummary || ""})),
		}));
})()`, chromedp.EvalAwaitPromise))
}

// Accessible fails the test, naming each rule and element, when axe-core finds a serious
// or critical violation on the page.
func (b *browserTab) Accessible() {
	b.t.Helper()
	vs := b.Axe()
	if len(vs) == 0 {
		return
	}
	lines := make([]string, len(vs))
	for i, v := range vs {
		lines[i] = "  " + v.String()
	}
	b.t.Errorf("axe-core: %d serious or critical violations on %s:\n%s", len(vs), b.URL(), strings.Join(lines, "\n"))
}
