package oneline

import "testing"

func TestEscape(t *testing.T) {
	for in, want := range map[string]string{
		"":                           "",
		"plain text, ünïcode":        "plain text, ünïcode",
		"kernel\nname: no such file": `kernel\x0aname: no such file`,
		"tab\tcr\rescape\x1b[31mred": `tab\x09cr\x0descape\x1b[31mred`,
		"C1 \u0085 and DEL \x7f":     `C1 \x85 and DEL \x7f`,
	} {
		if got := Escape(in); got != want {
			t.Errorf("Escape(%q) = %q, want %q", in, got, want)
		}
	}
}
