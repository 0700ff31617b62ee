package sshd

import (
	"fmt"
	"slices"
	"strings"
	"testing"
)

func manyShares(n int) string {
	var w []string
	for i := range n {
		w = append(w, fmt.Sprintf("p%d@example.com", i))
	}
	return strings.Join(w, ",")
}

func TestParseShares(t *testing.T) {
	for _, tc := range []struct {
		in      string
		want    []string
		wantErr bool
	}{
		{in: "ada@example.com", want: []string{"ada@example.com"}},
		{in: "Ada@Example.com,group:Eng", want: []string{"ada@example.com", "group:eng"}},
		{in: "ada@example.com,,bob@example.com", want: []string{"ada@example.com", "bob@example.com"}},
		{in: "group:", wantErr: true},
		{in: "nobody", wantErr: true},
		{in: "@example.com", wantErr: true},
		{in: "a@b@c", wantErr: true},
		{in: "ada@exa\x1bmple.com", wantErr: true},
		{in: ",", wantErr: true},
		{in: "ada@example.com,ADA@example.com", want: []string{"ada@example.com"}},
		{in: "group:a b", wantErr: true},
		{in: "ada@exa_mple.com", wantErr: true},
		{in: manyShares(101), wantErr: true},
		{in: manyShares(100), want: strings.Split(manyShares(100), ",")},
	} {
		got, err := parseShares(tc.in)
		if (err != nil) != tc.wantErr || !slices.Equal(got, tc.want) {
			t.Errorf("parseShares(%q) = %q, %v", tc.in, got, err)
		}
	}
	// Errors speak to the person at the terminal, not in data's terms.
	if _, err := parseShares("nobody"); err == nil || err.Error() != `share=nobody: "nobody" is neither an email address nor group:NAME` {
		t.Errorf("parseShares(nobody): %v", err)
	}
}
