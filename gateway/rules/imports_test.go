package rules

import (
	"go/parser"
	"go/token"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// The rules engine is pure: besides the standard library it imports only the model, so that
// no storage, configuration or network code can creep into a decision.
func TestRulesImportOnlyTheModel(t *testing.T) {
	files, _ := filepath.Glob("*.go")
	fset := token.NewFileSet()
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		parsed, err := parser.ParseFile(fset, f, nil, parser.ImportsOnly)
		if err != nil {
			t.Fatal(err)
		}
		for _, imp := range parsed.Imports {
			path, _ := strconv.Unquote(imp.Path.Value)
			first, _, _ := strings.Cut(path, "/")
			if path != "github.com/deskgate/deskgate/gateway/model" && strings.Contains(first, ".") {
				t.Errorf("%s imports %s; gateway/rules may import gateway/model and the standard library only", f, path)
			}
		}
	}
}
