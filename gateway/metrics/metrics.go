// Package metrics holds deskgate's Prometheus metrics, in the conventions of
// prometheus/client_golang: the deskgate_ prefix, _total for counters, base units (_seconds,
// _bytes). /metrics serves Registry. The rules engine counts nothing: the packages that carry
// a decision out count what happened.
package metrics

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

// Registry is what /metrics serves: deskgate's metrics, the Go runtime's and the process's.
var Registry = prometheus.NewRegistry()

var factory = promauto.With(Registry)

// latency buckets from 0.5 ms to about 16 s: an fsync'd commit is about a millisecond, a
// message checked against DNS can take seconds.
var latency = prometheus.ExponentialBuckets(0.0005, 2, 16)

var (
	// MessagesReceived counts mail by protocol (smtp, lmtp) and outcome (accepted,
	// duplicate, refused, tempfail).
	MessagesReceived = factory.NewCounterVec(prometheus.CounterOpts{
		Name: "deskgate_messages_received_total",
		Help: "Messages received, by protocol and outcome (accepted, duplicate, refused, tempfail).",
	}, []string{"proto", "outcome"})

	// SMTPReplies counts the replies to MAIL, RCPT, end of DATA and refused sessions and
	// commands, by code.
	SMTPReplies = factory.NewCounterVec(prometheus.CounterOpts{
		Name: "deskgate_smtp_replies_total",
		Help: "SMTP and LMTP replies to MAIL, RCPT, the end of DATA, and every refusal, by protocol, reply code and enhanced code.",
	}, []string{"proto", "code", "enhanced"})

	// DataReplySeconds is the time from the end of a message's data to its reply: parsing,
	// sender authentication, the decision, composing and the fsync'd commit.
	DataReplySeconds = factory.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "deskgate_smtp_data_reply_seconds",
		Help:    "Time from the end of a message's DATA to its reply (the commit included).",
		Buckets: latency,
	}, []string{"proto"})

	// UndecodableMessages counts mail that could not be fully decoded (rule M1).
	UndecodableMessages = factory.NewCounter(prometheus.CounterOpts{
		Name: "deskgate_undecodable_messages_total",
		Help: "Received mail that could not be fully decoded (rule M1); the original is kept.",
	})

	// TicketsCreated counts new tickets, by mail or by the API.
	TicketsCreated = factory.NewCounter(prometheus.CounterOpts{
		Name: "deskgate_tickets_created_total",
		Help: "Tickets opened.",
	})

	// CommentsCreated counts new comments by how they came (email, api) and visibility.
	CommentsCreated = factory.NewCounterVec(prometheus.CounterOpts{
		Name: "deskgate_comments_created_total",
		Help: "Comments added, by how they came (email, api) and visibility (public, internal).",
	}, []string{"via", "visibility"})

	// Notifications counts notifications queued, by kind (comment, ticket_created, ...).
	Notifications = factory.NewCounterVec(prometheus.CounterOpts{
		Name: "deskgate_notifications_total",
		Help: "Notifications composed and queued, by kind.",
	}, []string{"kind"})

	// WriterPlans counts events decided on the writer instead of on a snapshot: because a
	// record their snapshot plan read had changed (conflict), or because their ticket had
	// such conflicts a moment ago (contended).
	WriterPlans = factory.NewCounterVec(prometheus.CounterOpts{
		Name: "deskgate_store_writer_plans_total",
		Help: "Events decided and composed on the store's writer rather than on a snapshot, by reason (conflict, contended).",
	}, []string{"reason"})
	// StoreCommits and StoreWrites count write transactions and the changes they carried.
	StoreCommits = factory.NewCounter(prometheus.CounterOpts{
		Name: "deskgate_store_commits_total",
		Help: "Write transactions committed, each with one fsync.",
	})
	StoreWrites = factory.NewCounter(prometheus.CounterOpts{
		Name: "deskgate_store_writes_total",
		Help: "Changes carried by those transactions (group commit).",
	})
	// StoreCommitSeconds is the time of one commit, fsync included.
	StoreCommitSeconds = factory.NewHistogram(prometheus.HistogramOpts{
		Name:    "deskgate_store_commit_seconds",
		Help:    "Time of one write transaction, fsync included.",
		Buckets: latency,
	})
	// StoreWriteLockSeconds is how long one write transaction held PostgreSQL's write lock,
	// which every node's writes take in turn: its sum over the writes is the serial part of
	// the desk's work.
	StoreWriteLockSeconds = factory.NewHistogram(prometheus.HistogramOpts{
		Name:    "deskgate_store_write_lock_seconds",
		Help:    "Time one write transaction held the write lock shared by every node (PostgreSQL only).",
		Buckets: latency,
	})
	// StoreCommitBatch is the number of changes one commit carried.
	StoreCommitBatch = factory.NewHistogram(prometheus.HistogramOpts{
		Name:    "deskgate_store_commit_batch_size",
		Help:    "Changes carried by one write transaction.",
		Buckets: prometheus.ExponentialBuckets(1, 2, 10),
	})

	// RelayRecipients counts recipients handed to the upstream, by result (sent, failed,
	// deferred).
	RelayRecipients = factory.NewCounterVec(prometheus.CounterOpts{
		Name: "deskgate_relay_recipients_total",
		Help: "Recipients delivered (sent), failed for good (failed) or to be tried again (deferred).",
	}, []string{"result"})
	// RelayDeliverySeconds is the time of handing one delivery to the upstream.
	RelayDeliverySeconds = factory.NewHistogram(prometheus.HistogramOpts{
		Name:    "deskgate_relay_delivery_seconds",
		Help:    "Time to hand one delivery (all its recipients) to the upstream or the Maildir.",
		Buckets: latency,
	})

	// BounceAddressMail counts mail to bounce addresses by kind (dsn, auto_reply, other):
	// every DSN, whether or not it changed a delivery, and the mail that changes nothing
	// because it is no DSN (T6).
	BounceAddressMail = factory.NewCounterVec(prometheus.CounterOpts{
		Name: "deskgate_bounce_address_mail_total",
		Help: "Mail to bounce addresses by kind: dsn (delivery status notifications, changing a delivery or not), auto_reply and other (never changing one).",
	}, []string{"kind"})

	// ConfigReloads counts reloads (SIGHUP and POST /api/v1/reload) by result (ok, refused);
	// `deskgate reload --pid` waits for it.
	ConfigReloads = factory.NewCounterVec(prometheus.CounterOpts{
		Name: "deskgate_config_reloads_total",
		Help: "Config reloads (SIGHUP or POST /api/v1/reload) by result: ok, or refused (the running config kept).",
	}, []string{"result"})

	// SenderAuth counts received mail by authentication.agent_identity mode and the result
	// that mode decides by; AgentClaims counts mail from agents' addresses by outcome.
	SenderAuth = factory.NewCounterVec(prometheus.CounterOpts{
		Name: "deskgate_sender_auth_total",
		Help: "Received mail by authentication.agent_identity mode and the result that mode decides by.",
	}, []string{"mode", "outcome"})
	AgentClaims = factory.NewCounterVec(prometheus.CounterOpts{
		Name: "deskgate_agent_claims_total",
		Help: "Mail from agent addresses: proven, unverified (agent_identity none: believed without proof), spoofed (filed as an end user's), deferred (451, DNS failed) or refused (550, DMARC p=reject).",
	}, []string{"mode", "outcome"})
	// DMARCRefused counts mail refused because it fails DMARC and its From domain publishes
	// p=reject (authentication.dmarc_reject: refuse), agents' addresses or not.
	DMARCRefused = factory.NewCounter(prometheus.CounterOpts{
		Name: "deskgate_dmarc_refused_total",
		Help: "Mail refused with 550 5.7.1: it fails DMARC and its From domain publishes p=reject.",
	})

	// WebRequests and WebRequestSeconds count the web pages' requests by page, which is the
	// route's pattern ("GET /tickets/{id}"), never the path asked for, so that a crawler
	// cannot grow the label set; requests no route takes are page "unrouted".
	WebRequests = factory.NewCounterVec(prometheus.CounterOpts{
		Name: "deskgate_web_requests_total",
		Help: "Requests to the web pages (listen.web), by page (the route's pattern) and HTTP status code.",
	}, []string{"page", "code"})
	WebRequestSeconds = factory.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "deskgate_web_request_seconds",
		Help:    "Time to answer a request to the web pages, by page (the route's pattern).",
		Buckets: latency,
	}, []string{"page"})
	// WebSignIns counts agents' sign-ins on the web pages by outcome.
	WebSignIns = factory.NewCounterVec(prometheus.CounterOpts{
		Name: "deskgate_web_sign_ins_total",
		Help: "Sign-ins on the web pages, by outcome.",
	}, []string{"outcome"})
)

func init() {
	Registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	// Every kind is served from the start, at 0, so that a rate over it is defined before
	// the first such mail.
	for _, kind := range []string{"dsn", "auto_reply", "other"} {
		BounceAddressMail.WithLabelValues(kind)
	}
}

// Gauge registers a gauge whose value is read at each scrape; serve uses it for what lives
// in other objects (sessions open, queue depth). A second registration of a name is ignored.
func Gauge(name, help string, value func() float64) {
	Registry.Register(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, value))
}
