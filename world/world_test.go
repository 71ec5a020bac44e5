package world

import (
	"slices"
	"strings"
	"testing"
)

// A world is the same for the same seed, and every text it writes states
// its facts truly.
func TestWorld(t *testing.T) {
	a, b := New(3, 20), New(3, 20)
	if !slices.EqualFunc(a.Products, b.Products, func(x, y Product) bool { return x.Name == y.Name }) ||
		!slices.Equal(a.Documents(2), b.Documents(2)) {
		t.Fatal("the same seed wrote two worlds")
	}
	if New(4, 20).Products[0].Name == a.Products[0].Name && New(4, 20).Products[1].Name == a.Products[1].Name {
		t.Error("another seed wrote the same products")
	}
	if len(a.Facts) != 20*len(attributes) {
		t.Fatalf("%d facts", len(a.Facts))
	}
	names := map[string]bool{}
	for _, p := range a.Products {
		if names[p.Name] || len([]rune(p.Name)) != 3 {
			t.Errorf("product name %q repeated or not three characters", p.Name)
		}
		names[p.Name] = true
	}
	// Each document is one product's facts, all of them, each true.
	for _, doc := range a.Documents(3) {
		var p *Product
		for i := range a.Products {
			if strings.Contains(doc, a.Products[i].Name) {
				p = &a.Products[i]
			}
		}
		if p == nil {
			t.Fatalf("document %q names no product", doc)
		}
		for _, at := range attributes {
			if !strings.Contains(doc, p.Attrs[at.Key]) {
				t.Errorf("document %q lacks %s's %s %s", doc, p.Name, at.Key, p.Attrs[at.Key])
			}
		}
	}
	taught, held := a.Split(0.25)
	if len(held) != len(a.Facts)/4 || len(taught)+len(held) != len(a.Facts) {
		t.Errorf("split %d + %d of %d", len(taught), len(held), len(a.Facts))
	}
	for _, f := range a.Facts[:12] {
		q := a.Question(f)
		if !strings.Contains(q, f.Product) || !strings.HasSuffix(q, "？") {
			t.Errorf("question %q", q)
		}
		if a.Wrong(f) == f.Value {
			t.Errorf("wrong value of %v is its value", f)
		}
		choices, right := a.Choices(f)
		if choices[right] != f.Value || len(choices) != 4 {
			t.Errorf("choices %v, right %d, value %s", choices, right, f.Value)
		}
		seen := map[string]bool{}
		for _, c := range choices {
			if seen[c] {
				t.Errorf("choices %v repeat", choices)
			}
			seen[c] = true
		}
	}
	for _, l := range a.EnglishText(20) {
		for _, r := range l {
			if r > 127 {
				t.Fatalf("English line %q has %q", l, r)
			}
		}
	}
}
