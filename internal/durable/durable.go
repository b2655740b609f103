// Package durable holds what makes a rename survive a crash.
package durable

import "os"

// SyncDir syncs dir itself, so that a file created or renamed in it is still there after a
// crash, not only its bytes.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
