package test

import (
	"fmt"
	"net/http"
	"os"
	"regexp"
	"sort"
	"strings"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// metrics scrapes /metrics and parses it as Prometheus does; the keys are the series,
// name{label="value",...} with the labels sorted, and histograms give _count and _sum.
func (d *daemon) metrics() map[string]float64 {
	d.t.Helper()
	resp, err := http.Get("http://" + d.adminAddr + "/metrics")
	if err != nil {
		d.t.Fatal(err)
	}
	defer resp.Body.Close()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		d.t.Fatalf("/metrics does not parse: %v", err)
	}
	out := map[string]float64{}
	for name, f := range families {
		for _, m := range f.GetMetric() {
			key := name + labelString(m.GetLabel())
			switch f.GetType() {
			case dto.MetricType_COUNTER:
				out[key] = m.GetCounter().GetValue()
			case dto.MetricType_GAUGE:
				out[key] = m.GetGauge().GetValue()
			case dto.MetricType_HISTOGRAM:
				out[name+"_count"+labelString(m.GetLabel())] = float64(m.GetHistogram().GetSampleCount())
				out[name+"_sum"+labelString(m.GetLabel())] = m.GetHistogram().GetSampleSum()
			}
		}
	}
	return out
}

func labelString(labels []*dto.LabelPair) string {
	if len(labels) == 0 {
		return ""
	}
	parts := make([]string, len(labels))
	for i, l := range labels {
		parts[i] = fmt.Sprintf("%s=%q", l.GetName(), l.GetValue())
	}
	sort.Strings(parts)
	return "{" + strings.Join(parts, ",") + "}"
}

func TestMetricsMoveWithMail(t *testing.T) {
	d := startDaemon(t, options{})
	before := d.metrics()
	for _, name := range []string{"go_goroutines", "process_resident_memory_bytes", "deskgate_sessions", "deskgate_queue_oldest_age_seconds"} {
		if _, ok := before[name]; !ok {
			t.Errorf("/metrics has no %s", name)
		}
	}
	if err := sendSMTP(d.smtpAddr, "jane@customer.test", []string{"support@example.com"},
		mail(map[string]string{"From": "jane@customer.test", "Cc": "joe@customer.test", "Subject": "metrics"}, "count me\n")); err != nil {
		t.Fatal(err)
	}
	if err := sendSMTP(d.smtpAddr, "jane@customer.test", []string{"nobody@example.com"}, mail(map[string]string{"From": "jane@customer.test"}, "x\n")); err == nil {
		t.Fatal("a foreign recipient was accepted")
	}
	d.settle()
	after := d.metrics()
	for _, series := range []string{
		`deskgate_messages_received_total{outcome="accepted",proto="smtp"}`,
		`deskgate_smtp_replies_total{code="250",enhanced="2.0.0",proto="smtp"}`,
		`deskgate_smtp_replies_total{code="550",enhanced="5.1.1",proto="smtp"}`,
		`deskgate_tickets_created_total`,
		`deskgate_comments_created_total{via="email",visibility="public"}`,
		`deskgate_notifications_total{kind="ticket_created"}`,
		`deskgate_relay_recipients_total{result="sent"}`,
		`deskgate_sender_auth_total{mode="none",outcome="none"}`,
		`deskgate_smtp_data_reply_seconds_count{proto="smtp"}`,
		`deskgate_store_commit_seconds_count`,
		`deskgate_store_commit_batch_size_count`,
		`deskgate_relay_delivery_seconds_count`,
		`deskgate_tickets`,
		`deskgate_comments`,
	} {
		if after[series] <= before[series] {
			t.Errorf("%s did not move with a mail: %v -> %v", series, before[series], after[series])
		}
	}
	if after["deskgate_smtp_data_reply_seconds_sum{proto=\"smtp\"}"] <= 0 {
		t.Errorf("the end-of-DATA histogram has no time in it")
	}

	// Every metric the shipped alerts use is one deskgate serves.
	rules, err := os.ReadFile("../contrib/prometheus-alerts.yaml")
	if err != nil {
		t.Fatal(err)
	}
	served := map[string]bool{}
	for series := range after {
		name, _, _ := strings.Cut(series, "{")
		served[strings.TrimSuffix(strings.TrimSuffix(name, "_count"), "_sum")] = true
	}
	for _, name := range regexp.MustCompile(`deskgate_[a-z_]+`).FindAllString(string(rules), -1) {
		if !served[strings.TrimSuffix(name, "_bucket")] {
			t.Errorf("contrib/prometheus-alerts.yaml uses %s, which /metrics does not serve", name)
		}
	}
}
