package test

import (
	"bytes"
	"fmt"
	"html"
	"image"
	"image/png"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/chromedp/chromedp"
)

// selftestPages are the pages the harness is tried on: one that is accessible, one that
// breaks two axe-core rules, both with a CSP as strict as deskgate's pages will send (no
// inline script), and one whose inline script opens an alert.
func selftestPages(t *testing.T) (*httptest.Server, func() []string) {
	var mu sync.Mutex
	var posted []string
	mux := http.NewServeMux()
	const csp = "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'"
	mux.HandleFunc("GET /style.css", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/css")
		fmt.Fprint(w, "body { font-family: sans-serif; color: #111; background: #fff; }\n.tall { height: 1500px; }\n")
	})
	mux.HandleFunc("GET /good", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Security-Policy", csp)
		greeting := ""
		if c, err := r.Cookie("who"); err == nil {
			greeting = "<p>Hello again, " + html.EscapeString(c.Value) + ".</p>"
		}
		fmt.Fprintf(w, `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Write to the desk</title><link rel="stylesheet" href="/style.css"></head>
<body><main>
<h1>Write to the desk</h1>%s
<form method="post" action="/send">
<p><label for="email">Your address</label> <input id="email" name="email" type="email"></p>
<p><label>Topic <select name="topic"><option value="billing">Billing</option><option value="other">Other</option></select></label></p>
<p><label for="body">Message</label><br><textarea id="body" name="body"></textarea></p>
<p><button type="submit">Send</button></p>
</form>
<div class="tall"><p>Replies come by mail.</p></div>
</main></body></html>`, greeting)
	})
	mux.HandleFunc("POST /send", func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		posted = append(posted, r.PostFormValue("email")+"|"+r.PostFormValue("topic")+"|"+r.PostFormValue("body"))
		mu.Unlock()
		http.SetCookie(w, &http.Cookie{Name: "who", Value: r.PostFormValue("email"), Path: "/", HttpOnly: true})
		// Post, redirect, get: the click must follow the redirect to the page it ends on.
		http.Redirect(w, r, "/thanks?to="+r.PostFormValue("email"), http.StatusSeeOther)
	})
	mux.HandleFunc("GET /thanks", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Security-Policy", csp)
		to := html.EscapeString(r.URL.Query().Get("to"))
		fmt.Fprintf(w, `<!doctype html><html lang="en"><head><title>Sent</title></head>
<body><main><h1>Thank you, %s</h1>
<ul><li id="cc-1">a@example.com <form method="post" action="/remove"><input type="hidden" name="cc" value="a@example.com"><button>Remove</button></form></li>
<li id="cc-2">b@example.com <form method="post" action="/remove"><input type="hidden" name="cc" value="b@example.com"><button>Remove</button></form></li></ul>
<p><a href="/good">Write again</a></p></main></body></html>`, to)
	})
	mux.HandleFunc("POST /remove", func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		posted = append(posted, "remove "+r.PostFormValue("cc"))
		mu.Unlock()
		http.Redirect(w, r, "/thanks", http.StatusSeeOther)
	})
	mux.HandleFunc("GET /pixel.png", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "image/png")
		png.Encode(w, image.NewGray(image.Rect(0, 0, 8, 8)))
	})
	mux.HandleFunc("GET /bad", func(w http.ResponseWriter, r *http.Request) {
		// The CSP too, so that finding violations here shows axe-core runs under it.
		w.Header().Set("Content-Security-Policy", csp)
		fmt.Fprint(w, `<!doctype html><html lang="en"><head><title>Broken</title></head><body><main>
<h1>Broken</h1><img src="/pixel.png"><form><input name="q" type="text"></form></main></body></html>`)
	})
	mux.HandleFunc("GET /alert", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, `<!doctype html><html lang="en"><head><title>Hostile</title></head><body><main>
<h1>Hostile</h1><script>alert(1)</script><p>After the script.</p></main></body></html>`)
	})
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewUnstartedServer(mux)
	ts.Listener.Close()
	ts.Listener = l
	ts.Start()
	t.Cleanup(ts.Close)
	return ts, func() []string {
		mu.Lock()
		defer mu.Unlock()
		return slices.Clone(posted)
	}
}

// TestBrowserHarness tries every helper of the browser harness on small local pages, so a
// page test that fails is about the page and not the harness; and checks that no Chromium
// process outlives the test.
func TestBrowserHarness(t *testing.T) {
	needChromium(t)
	ts, posted := selftestPages(t)
	var dataDir string
	t.Run("pages", func(t *testing.T) {
		b := startBrowser(t)
		dataDir = chromiumDataDir(t)

		if code := b.Navigate(ts.URL + "/good"); code != http.StatusOK {
			t.Fatalf("GET /good: status %d", code)
		}
		if text := b.Text(); !strings.Contains(text, "Write to the desk") || !strings.Contains(text, "Replies come by mail.") {
			t.Errorf("page text does not read as the page: %q", text)
		}
		if d := b.Dialogs(); len(d) != 0 {
			t.Errorf("dialogs on a page with no script: %q", d)
		}
		if vs := b.Axe(); len(vs) != 0 {
			t.Errorf("axe-core finds serious or critical violations on the accessible page: %v", vs)
		}

		// The whole page, not the window: as wide as the viewport, as high as the document.
		wide := screenshotPath(t, "browser-harness.png")
		b.Screenshot(wide)
		checkPNG(t, wide, browserWidth, pageHeight(b))
		b.Narrow()
		narrow := screenshotPath(t, "browser-harness-narrow.png")
		b.Screenshot(narrow)
		checkPNG(t, narrow, narrowWidth, pageHeight(b))
		b.Wide()

		b.Fill("Your address", "ann@example.com") // by its label's for=
		b.Fill("Topic", "other")                  // a select, by the label around it
		b.Fill("body", "The printer is on fire.") // by name
		if code := b.ClickButton("Send"); code != http.StatusOK {
			t.Fatalf("Send: status %d", code)
		}
		if got, want := posted(), []string{"ann@example.com|other|The printer is on fire."}; !slices.Equal(got, want) {
			t.Errorf("the form posted %q, want %q", got, want)
		}
		if !strings.HasSuffix(b.URL(), "/thanks?to=ann@example.com") {
			t.Errorf("after Send the tab shows %s, not the page the POST redirected to", b.URL())
		}
		if text := b.Text(); !strings.Contains(text, "Thank you, ann@example.com") {
			t.Errorf("after Send the page reads %q", text)
		}

		// One of several buttons that read the same, picked by the element around it.
		if code := b.ClickButtonIn("#cc-2", "Remove"); code != http.StatusOK {
			t.Fatalf("Remove: status %d", code)
		}
		if got := posted(); len(got) != 2 || got[1] != "remove b@example.com" {
			t.Errorf("Remove in #cc-2 posted %q, want the removal of b@example.com", got)
		}
		if code := b.FollowLink("Write again"); code != http.StatusOK || !strings.HasSuffix(b.URL(), "/good") {
			t.Fatalf("the link led to %s (status %d), not /good", b.URL(), code)
		}

		// A second person has cookies of their own: the first one's is not sent.
		if !strings.Contains(b.Text(), "Hello again, ann@example.com") {
			t.Errorf("the cookie set by the POST is not sent back: %q", b.Text())
		}
		other := b.newPerson()
		other.Navigate(ts.URL + "/good")
		if text := other.Text(); strings.Contains(text, "Hello again") {
			t.Errorf("a new person's tab shares the first person's cookies: %q", text)
		}

		b.Navigate(ts.URL + "/bad")
		vs := b.Axe()
		ids := map[string]string{}
		for _, v := range vs {
			var nodes []string
			for _, n := range v.Nodes {
				nodes = append(nodes, n.HTML)
			}
			ids[v.ID] = strings.Join(nodes, " ")
		}
		if !strings.Contains(ids["image-alt"], "<img") {
			t.Errorf("axe-core misses the image without alt text; it reports %v", vs)
		}
		if !strings.Contains(ids["label"], `name="q"`) {
			t.Errorf("axe-core misses the input without a label; it reports %v", vs)
		}
		// What a page test prints when a page fails: the rule, the help, the element.
		if len(vs) > 0 && !strings.Contains(vs[0].String(), vs[0].Help) {
			t.Errorf("violation text lacks its help: %s", vs[0])
		}

		b.Navigate(ts.URL + "/alert")
		if d := b.Dialogs(); !slices.Equal(d, []string{"alert: 1"}) {
			t.Errorf("dialogs after an inline alert(1): %q, want one alert", d)
		}
		// The alert was dismissed, so the page went on loading.
		if !strings.Contains(b.Text(), "After the script.") {
			t.Errorf("the page stopped at the alert: %q", b.Text())
		}
		if d := other.Dialogs(); len(d) != 0 {
			t.Errorf("the other person's tab saw dialogs: %q", d)
		}
	})
	if dataDir == "" {
		return
	}
	if pids := processesUsing(dataDir); len(pids) > 0 {
		t.Errorf("chromium processes left behind after the test: %v", pids)
	}
}

// pageHeight is the height of the document in the tab, in CSS pixels.
func pageHeight(b *browserTab) int {
	b.t.Helper()
	h := step(b, "measure the page", chromedp.Evaluate[int](`document.documentElement.scrollHeight`))
	if h <= narrowHeight {
		b.t.Fatalf("the test page is %d high, no taller than the window: a full-page screenshot proves nothing", h)
	}
	return h
}

// checkPNG decodes the file at path as a PNG of the given size.
func checkPNG(t *testing.T, path string, width, height int) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := png.DecodeConfig(bytes.NewReader(data))
	if err != nil {
		t.Fatalf("%s is not a PNG: %v", path, err)
	}
	if _, err := png.Decode(bytes.NewReader(data)); err != nil {
		t.Fatalf("%s does not decode: %v", path, err)
	}
	if cfg.Width != width || cfg.Height != height {
		t.Errorf("%s is %dx%d, want %dx%d", path, cfg.Width, cfg.Height, width, height)
	}
}

// chromiumDataDir finds the profile folder of the Chromium this process started: every
// process of that browser names it on its command line, so it tells them from the
// Chromiums of anything else running on the machine.
func chromiumDataDir(t *testing.T) string {
	t.Helper()
	entries, _ := os.ReadDir("/proc")
	self := strconv.Itoa(os.Getpid())
	for _, e := range entries {
		stat, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		// The parent's pid is the second field after the command's closing parenthesis.
		if i := bytes.LastIndexByte(stat, ')'); i < 0 || len(strings.Fields(string(stat[i+1:]))) < 2 ||
			strings.Fields(string(stat[i+1:]))[1] != self {
			continue
		}
		cmdline, _ := os.ReadFile("/proc/" + e.Name() + "/cmdline")
		for arg := range bytes.SplitSeq(cmdline, []byte{0}) {
			if dir, ok := strings.CutPrefix(string(arg), "--user-data-dir="); ok {
				return dir
			}
		}
	}
	t.Log("could not find the Chromium child of this test; not checking for leftovers")
	return ""
}

// processesUsing lists the processes whose command line names the profile folder dir.
func processesUsing(dir string) []string {
	want := "--user-data-dir=" + dir
	var pids []string
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		cmdline, err := os.ReadFile("/proc/" + e.Name() + "/cmdline")
		if err != nil {
			continue
		}
		if slices.Contains(strings.Split(string(cmdline), "\x00"), want) {
			pids = append(pids, e.Name())
		}
	}
	return pids
}
