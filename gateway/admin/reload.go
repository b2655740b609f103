package admin

import (
	"errors"
	"net/http"

	"github.com/deskgate/deskgate/config"
)

// ConfigNote is one problem or warning of a config file, by its key path ("" for the file as
// a whole, such as a YAML syntax error).
type ConfigNote struct {
	Key     string `json:"key"`
	Message string `json:"message"`
}

// Reloaded is the answer of POST /api/v1/reload when the new config is live.
type Reloaded struct {
	Config   string       `json:"config"`
	Warnings []ConfigNote `json:"warnings"`
}

// ReloadRefused is the 422 answer when the file was refused; the running config stays.
type ReloadRefused struct {
	Error    string       `json:"error"`
	Config   string       `json:"config,omitempty"`
	Problems []ConfigNote `json:"problems"`
}

func notes(ps []config.Problem) []ConfigNote {
	out := make([]ConfigNote, 0, len(ps))
	for _, p := range ps {
		out = append(out, ConfigNote{Key: p.Key, Message: p.Msg})
	}
	return out
}

// reload is POST /api/v1/reload. It answers only when the reload is over, so that the
// caller knows which config serves the next mail.
func (s *Server) reload(w http.ResponseWriter, _ *http.Request) {
	if s.reloadConfig == nil {
		writeError(w, http.StatusServiceUnavailable, "this server cannot reload its config")
		return
	}
	file, warnings, err := s.reloadConfig()
	if err != nil {
		var ps config.Problems
		if !errors.As(err, &ps) {
			ps = config.Problems{{Msg: err.Error()}}
		}
		writeJSON(w, http.StatusUnprocessableEntity, ReloadRefused{
			Error:  "the new config was refused; the running config is kept",
			Config: file, Problems: notes(ps)})
		return
	}
	writeJSON(w, http.StatusOK, Reloaded{Config: file, Warnings: notes(warnings)})
}
