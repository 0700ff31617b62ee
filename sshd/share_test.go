package sshd

import (
	"slices"
	"testing"
)

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
	} {
		got, err := parseShares(tc.in)
		if (err != nil) != tc.wantErr || !slices.Equal(got, tc.want) {
			t.Errorf("parseShares(%q) = %q, %v", tc.in, got, err)
		}
	}
}
