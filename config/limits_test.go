package config

import "testing"

func TestMaxErrors(t *testing.T) {
	cfg, err := Load(writeConfig(t, validBase))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Limits.MaxErrors != 20 {
		t.Errorf("limits.max_errors default %d, want 20 (Postfix's smtpd_hard_error_limit)", cfg.Limits.MaxErrors)
	}
	cfg, err = Load(writeConfig(t, validBase+"limits: {max_errors: 5}\n"))
	if err != nil || cfg.Limits.MaxErrors != 5 {
		t.Errorf("max_errors: 5 gave %v, %v", cfg.Limits.MaxErrors, err)
	}
	for _, v := range []string{"0", "-1"} {
		if ps := problemsOf(t, validBase+"limits: {max_errors: "+v+"}\n"); !hasProblem(ps, "limits.max_errors", "at least 1") {
			t.Errorf("max_errors: %s: problems %v, want limits.max_errors: ... at least 1", v, ps)
		}
	}
}
