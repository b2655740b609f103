package main

import (
	"github.com/deskgate/deskgate/config"
	"github.com/deskgate/deskgate/store"
)

// openStore opens the store the config names: PostgreSQL at store.url, or bbolt in data_dir.
func openStore(cfg *config.Config) (*store.Store, error) {
	if cfg.Store.URL != "" {
		return store.OpenPostgres(cfg.Store.URL, cfg.Store.PasswordFile)
	}
	return store.Open(cfg.DataDir)
}
