// Package world writes a small synthetic Chinese world from a seed: invented
// products with attributes, the text that describes them, and the
// instruction, preference and multiple-choice data that ask about them.
// It stands in for real corpora and a real LLaMA-2 where a run must be
// offline and take minutes (zhllama demo): every fact is known, so every
// stage's improvement can be measured exactly.
package world

import (
	"fmt"
	"math/rand/v2"
	"strings"
)

// Attribute is a kind of fact: its name, its possible values, how the
// text states it and how a question asks for it.
type Attribute struct {
	Key       string
	Values    []string
	Sentences []string // {N} the product, {V} the value
	Questions []string
}

// PriceKey is the attribute that says what a product costs.
const PriceKey = "价格"

// attributes are the facts every product has.
var attributes = []Attribute{
	{Key: "颜色", Values: []string{"红色", "蓝色", "绿色", "黄色", "白色", "黑色", "紫色", "橙色"},
		Sentences: []string{"{N}的颜色是{V}。", "{N}是{V}的。", "说到{N}，它通体{V}。", "人们一眼就能认出{V}的{N}。"},
		Questions: []string{"{N}是什么颜色的？", "{N}的颜色是什么？"}},
	{Key: "产地", Values: []string{"青州", "云城", "石港", "松县", "白沙", "金川", "海宁", "南屏"},
		Sentences: []string{"{N}产自{V}。", "{N}的产地是{V}。", "{V}出产{N}。", "{N}来自{V}，那里的工匠世代制作它。"},
		Questions: []string{"{N}产自哪里？", "{N}的产地是哪里？"}},
	{Key: PriceKey, Values: []string{"十二元", "二十五元", "三十元", "四十八元", "六十元", "八十八元", "一百元", "一百五十元"},
		Sentences: []string{"{N}的价格是{V}。", "一件{N}卖{V}。", "{N}售价{V}。", "在集市上，{N}要{V}。"},
		Questions: []string{"{N}多少钱？", "{N}的价格是多少？"}},
	{Key: "用途", Values: []string{"泡茶", "写字", "照明", "装饰", "做饭", "洗衣", "种花", "读书"},
		Sentences: []string{"{N}用来{V}。", "{N}的用途是{V}。", "人们买{N}是为了{V}。", "有了{N}，{V}就方便多了。"},
		Questions: []string{"{N}用来做什么？", "{N}的用途是什么？"}},
}

// Name parts: a product is two syllables and a kind, e.g. 云松笔.
var (
	syllables = []rune("云松竹梅兰菊山水石月星风雪霜雨花叶青白金玉明清安和平长春秋冬夏")
	kinds     = []rune("笔灯伞扇镜瓶壶碗布鞋帽琴")
)

// Fact is one attribute of one product.
type Fact struct {
	Product, Key, Value string
	attr                int
}

// Product is an invented product and its attribute values, by key.
type Product struct {
	Name  string
	Attrs map[string]string
}

// World is the products and their facts.
type World struct {
	Products []Product
	Facts    []Fact
	rng      *rand.Rand
}

// New writes a world of n products from seed.
func New(seed uint64, n int) *World {
	w := &World{rng: rand.New(rand.NewPCG(seed, 0x3011d))}
	seen := map[string]bool{}
	for len(w.Products) < n {
		name := string([]rune{syllables[w.rng.IntN(len(syllables))], syllables[w.rng.IntN(len(syllables))], kinds[w.rng.IntN(len(kinds))]})
		if seen[name] || []rune(name)[0] == []rune(name)[1] {
			continue
		}
		seen[name] = true
		p := Product{Name: name, Attrs: map[string]string{}}
		for i, a := range attributes {
			v := a.Values[w.rng.IntN(len(a.Values))]
			p.Attrs[a.Key] = v
			w.Facts = append(w.Facts, Fact{Product: name, Key: a.Key, Value: v, attr: i})
		}
		w.Products = append(w.Products, p)
	}
	return w
}

func fill(tpl, name, value string) string {
	return strings.NewReplacer("{N}", name, "{V}", value).Replace(tpl)
}

// Documents are n paragraphs for each product, each stating all its facts
// in a shuffled order with randomly chosen wordings, then shuffled.
func (w *World) Documents(n int) []string {
	var docs []string
	for range n {
		for _, p := range w.Products {
			order := w.rng.Perm(len(attributes))
			var b strings.Builder
			for _, i := range order {
				a := attributes[i]
				b.WriteString(fill(a.Sentences[w.rng.IntN(len(a.Sentences))], p.Name, p.Attrs[a.Key]))
			}
			docs = append(docs, b.String())
		}
	}
	w.rng.Shuffle(len(docs), func(i, j int) { docs[i], docs[j] = docs[j], docs[i] })
	return docs
}

// Split divides the facts into those taught by instruction data and
// those held out (a fraction), the same for every product count and seed.
func (w *World) Split(heldOut float64) (train, held []Fact) {
	idx := w.rng.Perm(len(w.Facts))
	n := int(heldOut * float64(len(w.Facts)))
	for k, i := range idx {
		if k < n {
			held = append(held, w.Facts[i])
		} else {
			train = append(train, w.Facts[i])
		}
	}
	return train, held
}

// Question is a question asking for f, in one of its wordings.
func (w *World) Question(f Fact) string {
	qs := attributes[f.attr].Questions
	return fill(qs[w.rng.IntN(len(qs))], f.Product, "")
}

// Answer states f as the answer to its question.
func Answer(f Fact) string { return fmt.Sprintf("%s的%s是%s。", f.Product, f.Key, f.Value) }

// Unhelpful is the answer of an assistant that does not help.
const Unhelpful = "这个问题我不太清楚。"

// Wrong is a value of f's attribute other than f's.
func (w *World) Wrong(f Fact) string {
	vals := attributes[f.attr].Values
	for {
		if v := vals[w.rng.IntN(len(vals))]; v != f.Value {
			return v
		}
	}
}

// Choices are f's value and three others of its attribute, shuffled, with
// the index of the right one.
func (w *World) Choices(f Fact) ([]string, int) {
	vals := attributes[f.attr].Values
	out := []string{f.Value}
	for _, i := range w.rng.Perm(len(vals)) {
		if len(out) == 4 {
			break
		}
		if vals[i] != f.Value {
			out = append(out, vals[i])
		}
	}
	w.rng.Shuffle(4, func(i, j int) { out[i], out[j] = out[j], out[i] })
	for i, v := range out {
		if v == f.Value {
			return out, i
		}
	}
	return out, 0
}

// EnglishText is plain English about the products (their names in
// numbers), the text a base vocabulary with few Chinese pieces is trained
// on, standing in for LLaMA's.
func (w *World) EnglishText(lines int) []string {
	colors := []string{"red", "blue", "green", "yellow", "white", "black", "purple", "orange"}
	things := []string{"pen", "lamp", "umbrella", "fan", "mirror", "bottle", "pot", "bowl", "cloth", "shoe", "hat", "lute"}
	places := []string{"the north", "the south", "the river town", "the hills", "the coast", "the old city"}
	verbs := []string{"is made in", "comes from", "is sold in", "is loved in"}
	var out []string
	for range lines {
		out = append(out, fmt.Sprintf("The %s %s number %d %s %s, and it costs %d coins.",
			colors[w.rng.IntN(len(colors))], things[w.rng.IntN(len(things))], w.rng.IntN(500),
			verbs[w.rng.IntN(len(verbs))], places[w.rng.IntN(len(places))], 5+w.rng.IntN(200)))
	}
	return out
}
