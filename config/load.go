package config

import (
	"errors"
	"fmt"
	"os"
	"reflect"
	"sort"
	"strings"
	"time"

	"github.com/go-viper/mapstructure/v2"
	"github.com/spf13/viper"
	"go.yaml.in/yaml/v3"
)

// EnvPrefix starts every environment override: DESKGATE_<SECTION>_<KEY>.
const EnvPrefix = "DESKGATE"

// Problem is one thing wrong with a config, named by its key path.
type Problem struct {
	Key string
	Msg string
}

func (p Problem) String() string {
	if p.Key == "" {
		return p.Msg
	}
	return p.Key + ": " + p.Msg
}

// Problems is every problem found in one config file; Load returns it as its error.
type Problems []Problem

func (ps Problems) Error() string {
	lines := make([]string, len(ps))
	for i, p := range ps {
		lines[i] = p.String()
	}
	return strings.Join(lines, "\n")
}

func defaults() map[string]any {
	host, _ := os.Hostname()
	return map[string]any{
		"hostname":                            host,
		"data_dir":                            "/var/lib/deskgate",
		"listen.smtp":                         ":25",
		"listen.lmtp":                         "",
		"listen.admin":                        "127.0.0.1:8025",
		"listen.web":                          "",
		"tls.cert_file":                       "",
		"tls.key_file":                        "",
		"support.name":                        "Support",
		"support.addresses":                   []string{},
		"limits.max_message_bytes":            "25MiB",
		"limits.max_recipients":               100,
		"limits.max_ccs":                      48,
		"limits.max_sessions":                 200,
		"limits.max_sessions_per_ip":          20,
		"limits.max_errors":                   20,
		"limits.max_data_memory":              "512MiB",
		"limits.shutdown_grace":               "30s",
		"limits.min_data_rate":                500,
		"limits.session_timeout":              "1h",
		"limits.max_mails_per_sender_hour":    60,
		"limits.read_timeout":                 "5m",
		"limits.write_timeout":                "5m",
		"agents":                              []any{},
		"policy.ccs_enabled":                  true,
		"policy.followers_enabled":            true,
		"policy.agent_cc_becomes_follower":    true,
		"policy.cc_blocklist":                 []string{},
		"policy.cc_removal":                   "email",
		"policy.reply_audience":               "notification",
		"policy.cc_attachments":               true,
		"notifications.ticket_created":        "requester",
		"notifications.assigned":              "requester_and_ccs",
		"notifications.solved":                "requester_and_ccs",
		"authentication.dns_resolver":         "",
		"authentication.trusted_authserv_ids": []string{},
		"authentication.agent_identity":       "dmarc",
		"authentication.timeout":              "10s",
		"authentication.dmarc_reject":         "refuse",
		"retention.delete_solved_after":       "0s",
		"store.url":                           "",
		"store.password_file":                 "",
		"upstream.address":                    "",
		"upstream.tls":                        "starttls",
		"upstream.username":                   "",
		"upstream.password_file":              "",
		"upstream.ca_file":                    "",
		"upstream.max_connections":            4,
		"upstream.retry_min":                  "30s",
		"upstream.retry_max":                  "1h",
		"upstream.max_queue_lifetime":         "120h",
		"upstream.timeout":                    "5m",
		"dkim.domain":                         "",
		"dkim.selector":                       "",
		"dkim.private_key_file":               "",
		"admin.token_file":                    "",
		"web.public_url":                      "",
		"web.status_view":                     "requester",
		"web.session_lifetime":                "12h",
		"web.trusted_header":                  "",
		"web.trusted_proxies":                 []string{},
		"log.level":                           "info",
		"log.format":                          "text",
	}
}

// EnvName is the environment variable that overrides a key ("limits.max_ccs" ->
// DESKGATE_LIMITS_MAX_CCS).
func EnvName(key string) string {
	return EnvPrefix + "_" + strings.ToUpper(strings.ReplaceAll(key, ".", "_"))
}

// Keys lists every config key, in the order of the file.
func Keys() []string {
	var keys []string
	var walk func(t reflect.Type, prefix string)
	walk = func(t reflect.Type, prefix string) {
		for i := 0; i < t.NumField(); i++ {
			f := t.Field(i)
			tag := f.Tag.Get("mapstructure")
			if tag == "-" || tag == "" {
				continue
			}
			key := prefix + tag
			if f.Type.Kind() == reflect.Struct && f.Type != reflect.TypeOf(time.Duration(0)) {
				walk(f.Type, key+".")
				continue
			}
			keys = append(keys, key)
		}
	}
	walk(reflect.TypeOf(Config{}), "")
	return keys
}

// Load reads, decodes and validates the config file at path. On any problem the error is
// a Problems listing all of them.
func Load(path string) (*Config, error) {
	v := viper.New()
	v.SetConfigType("yaml")
	// DESKGATE_LISTEN_LMTP= turns the LMTP listener off: an empty variable is a value.
	v.AllowEmptyEnv(true)
	for k, val := range defaults() {
		v.SetDefault(k, val)
	}
	for _, k := range Keys() {
		// Binding every key makes env overrides reach Unmarshal even when the file
		// does not name the key.
		if err := v.BindEnv(k, EnvName(k)); err != nil {
			return nil, Problems{{Key: k, Msg: err.Error()}}
		}
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, Problems{{Msg: fmt.Sprintf("cannot read config file: %v", err)}}
	}
	defer f.Close()
	if err := v.ReadConfig(f); err != nil {
		return nil, Problems{{Msg: fmt.Sprintf("%s: %v", path, yamlError(err))}}
	}

	var cfg Config
	var problems Problems
	// Unknown keys are found by comparing the file with Config's fields, not by reading the
	// decoder's messages, and all of them are named even where a value beside them is wrong.
	err = v.Unmarshal(&cfg, func(dc *mapstructure.DecoderConfig) {
		dc.DecodeHook = decodeHook
		dc.WeaklyTypedInput = true // env values are strings; "48" must still be an int
	})
	badKeys := map[string]bool{}
	if err != nil {
		for _, p := range decodeProblems(err) {
			problems = append(problems, p)
			badKeys[p.Key] = true
		}
	}
	for _, key := range unknownKeys(v.AllSettings(), reflect.TypeOf(Config{}), "") {
		problems = append(problems, Problem{Key: key, Msg: "unknown key"})
		badKeys[key] = true
	}
	cfg.Path = path
	for _, p := range validate(&cfg) {
		if !badKeys[p.Key] {
			problems = append(problems, p)
		}
	}
	problems = append(fromEnvironment(problems), unknownEnvironment()...)
	if len(problems) > 0 {
		sort.SliceStable(problems, func(i, j int) bool { return problems[i].Key < problems[j].Key })
		return &cfg, problems
	}
	return &cfg, nil
}

// fromEnvironment says of each problem whose value came from an environment variable that it
// did, so that nobody searches the file for it.
func fromEnvironment(ps Problems) Problems {
	for i, p := range ps {
		key := p.Key
		if strings.HasPrefix(key, "agents[") {
			key = "agents"
		}
		if key == "" {
			continue
		}
		if v, ok := os.LookupEnv(EnvName(key)); ok {
			ps[i].Msg = fmt.Sprintf("%s (from the environment: %s=%q)", p.Msg, EnvName(key), v)
		}
	}
	return ps
}

// unknownEnvironment names DESKGATE_ variables that override no key: a typo there would
// otherwise be ignored without a word.
func unknownEnvironment() Problems {
	known := map[string]bool{EnvPrefix + "_CONFIG": true}
	for _, k := range Keys() {
		known[EnvName(k)] = true
	}
	var out Problems
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(name, EnvPrefix+"_") && !known[name] {
			out = append(out, Problem{Key: name, Msg: "environment variable that matches no config key"})
		}
	}
	return out
}

func yamlError(err error) error {
	var pe viper.ConfigParseError
	if errors.As(err, &pe) {
		return pe.Unwrap()
	}
	return err
}

var (
	byteSizeType = reflect.TypeOf(ByteSize(0))
	durationType = reflect.TypeOf(time.Duration(0))
	agentsType   = reflect.TypeOf([]Agent{})
	stringsType  = reflect.TypeOf([]string{})
)

// decodeHook turns the strings that YAML and environment variables give into typed values.
func decodeHook(from, to reflect.Type, data any) (any, error) {
	switch to {
	case byteSizeType:
		switch d := data.(type) {
		case string:
			return ParseByteSize(d)
		case int:
			if d < 0 {
				return nil, fmt.Errorf("%d is negative", d)
			}
			return ByteSize(d), nil
		}
	case durationType:
		switch d := data.(type) {
		case string:
			dur, err := time.ParseDuration(d)
			if err != nil {
				return nil, fmt.Errorf("%q is not a duration (use Go durations such as 30s or 4h)", d)
			}
			return dur, nil
		case int:
			if d != 0 {
				return nil, fmt.Errorf("%d has no unit (use Go durations such as 30s or 4h)", d)
			}
			return time.Duration(0), nil
		}
	case agentsType:
		// From DESKGATE_AGENTS: a YAML (or JSON) list of agents.
		if s, ok := data.(string); ok {
			var list []any
			if err := yaml.Unmarshal([]byte(s), &list); err != nil {
				return nil, fmt.Errorf("not a YAML list of agents: %v", err)
			}
			return list, nil
		}
	case stringsType:
		if s, ok := data.(string); ok {
			if strings.TrimSpace(s) == "" {
				return []string{}, nil
			}
			parts := strings.Split(s, ",")
			for i := range parts {
				parts[i] = strings.TrimSpace(parts[i])
			}
			return parts, nil
		}
	}
	switch to.Kind() {
	case reflect.Int, reflect.Int64, reflect.Int32, reflect.Uint, reflect.Uint64, reflect.Uint32:
		// Weak typing would truncate 1.5 to 1 without a word.
		if f, ok := data.(float64); ok && f != float64(int64(f)) {
			return nil, fmt.Errorf("%v is not a whole number", f)
		}
	}
	if to.Kind() == reflect.String && data != nil {
		// Weak typing would turn a YAML list or map into a string silently; a list
		// where a string belongs is a mistake worth naming.
		switch from.Kind() {
		case reflect.Slice, reflect.Map:
			return nil, fmt.Errorf("expected a string, got a %s", kindWord(from.Kind()))
		}
	}
	return data, nil
}

func kindWord(k reflect.Kind) string {
	if k == reflect.Map {
		return "mapping"
	}
	return "list"
}

// decodeProblems turns mapstructure's joined errors into one Problem per key.
func decodeProblems(err error) Problems {
	var out Problems
	var walk func(error)
	walk = func(e error) {
		if multi, ok := e.(interface{ Unwrap() []error }); ok {
			for _, sub := range multi.Unwrap() {
				walk(sub)
			}
			return
		}
		de, ok := e.(*mapstructure.DecodeError)
		if !ok {
			if inner := errors.Unwrap(e); inner != nil {
				walk(inner)
				return
			}
		}
		if ok {
			if inner := (*mapstructure.DecodeError)(nil); errors.As(de.Unwrap(), &inner) {
				walk(de.Unwrap())
				return
			}
			out = append(out, Problem{Key: de.Name(), Msg: typeProblem(de.Unwrap())})
			return
		}
		out = append(out, Problem{Msg: e.Error()})
	}
	walk(err)
	return out
}

// unknownKeys lists the keys of settings that no field of t (a struct with mapstructure tags)
// takes, sorted, with their full path: "limits.bogus", "agents[1].rol".
func unknownKeys(settings map[string]any, t reflect.Type, prefix string) []string {
	fields := map[string]reflect.Type{}
	for i := 0; i < t.NumField(); i++ {
		if tag := t.Field(i).Tag.Get("mapstructure"); tag != "" && tag != "-" {
			fields[tag] = t.Field(i).Type
		}
	}
	var out []string
	for key, value := range settings {
		ft, ok := fields[key]
		if !ok {
			out = append(out, joinKey(prefix, key))
			continue
		}
		switch {
		case ft.Kind() == reflect.Struct && ft != reflect.TypeOf(time.Duration(0)):
			if m, ok := value.(map[string]any); ok {
				out = append(out, unknownKeys(m, ft, joinKey(prefix, key))...)
			}
		case ft.Kind() == reflect.Slice && ft.Elem().Kind() == reflect.Struct:
			if list, ok := value.([]any); ok {
				for i, item := range list {
					if m, ok := item.(map[string]any); ok {
						out = append(out, unknownKeys(m, ft.Elem(), fmt.Sprintf("%s[%d]", joinKey(prefix, key), i))...)
					}
				}
			}
		}
	}
	sort.Strings(out)
	return out
}

func joinKey(prefix, key string) string {
	if prefix == "" {
		return key
	}
	return prefix + "." + key
}

// typeProblem says what a value of the wrong type should have been, in YAML's words rather
// than Go's, from mapstructure's typed errors.
func typeProblem(err error) string {
	var parse *mapstructure.ParseError
	var unconvertible *mapstructure.UnconvertibleTypeError
	switch {
	case errors.As(err, &parse):
		return fmt.Sprintf("wrong type: expected %s, got %q", expected(parse.Expected.Kind()), fmt.Sprint(parse.Value))
	case errors.As(err, &unconvertible):
		return fmt.Sprintf("wrong type: expected %s, got %s", expected(unconvertible.Expected.Kind()), yamlKind(unconvertible.Value))
	}
	return "wrong type: " + err.Error()
}

func expected(k reflect.Kind) string {
	switch k {
	case reflect.Bool:
		return "true or false"
	case reflect.String:
		return "a string"
	case reflect.Slice, reflect.Array:
		return "a list"
	case reflect.Map, reflect.Struct:
		return "a mapping"
	case reflect.Float32, reflect.Float64:
		return "a number"
	}
	return "a whole number"
}

func yamlKind(v any) string {
	if v == nil {
		return "nothing"
	}
	switch reflect.TypeOf(v).Kind() {
	case reflect.Slice, reflect.Array:
		return "a list"
	case reflect.Map:
		return "a mapping"
	case reflect.Bool:
		return "true or false"
	case reflect.String:
		return fmt.Sprintf("%q", v)
	}
	return fmt.Sprint(v)
}
