package template

import (
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// Tool descriptions and function calls rendered as LLaMA-Factory's default
// tool format does. Their JSON is re-printed as Python's json.dumps(...,
// ensure_ascii=False) prints it, keys in their original order, since that
// text is what the model is trained on.

// object is a JSON object that remembers the order of its keys.
type object struct {
	keys []string
	vals map[string]any
}

func (o *object) get(k string) any { return o.vals[k] }

// decodeOrdered parses JSON into nil, bool, json.Number, string, []any and *object.
func decodeOrdered(s string) (any, error) {
	dec := json.NewDecoder(strings.NewReader(s))
	dec.UseNumber()
	v, err := decodeValue(dec)
	if err != nil {
		return nil, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, fmt.Errorf("extra data after the JSON value")
	}
	return v, nil
}

func decodeValue(dec *json.Decoder) (any, error) {
	tok, err := dec.Token()
	if err != nil {
		return nil, err
	}
	switch t := tok.(type) {
	case json.Delim:
		switch t {
		case '{':
			o := &object{vals: map[string]any{}}
			for dec.More() {
				kt, err := dec.Token()
				if err != nil {
					return nil, err
				}
				k := kt.(string)
				v, err := decodeValue(dec)
				if err != nil {
					return nil, err
				}
				if _, dup := o.vals[k]; !dup {
					o.keys = append(o.keys, k)
				}
				o.vals[k] = v
			}
			_, err := dec.Token()
			return o, err
		case '[':
			var a []any
			for dec.More() {
				v, err := decodeValue(dec)
				if err != nil {
					return nil, err
				}
				a = append(a, v)
			}
			_, err := dec.Token()
			return a, err
		}
		return nil, fmt.Errorf("unexpected %v", t)
	default:
		return tok, nil
	}
}

// pyDumps prints v as Python's json.dumps(v, ensure_ascii=False).
func pyDumps(v any) string {
	var b strings.Builder
	writePy(&b, v)
	return b.String()
}

func writePy(b *strings.Builder, v any) {
	switch x := v.(type) {
	case nil:
		b.WriteString("null")
	case bool:
		b.WriteString(strconv.FormatBool(x))
	case json.Number:
		b.WriteString(pyNumber(string(x)))
	case string:
		writePyString(b, x)
	case []any:
		b.WriteByte('[')
		for i, e := range x {
			if i > 0 {
				b.WriteString(", ")
			}
			writePy(b, e)
		}
		b.WriteByte(']')
	case *object:
		b.WriteByte('{')
		for i, k := range x.keys {
			if i > 0 {
				b.WriteString(", ")
			}
			writePyString(b, k)
			b.WriteString(": ")
			writePy(b, x.vals[k])
		}
		b.WriteByte('}')
	}
}

func writePyString(b *strings.Builder, s string) {
	b.WriteByte('"')
	for _, r := range s {
		switch r {
		case '"':
			b.WriteString(`\"`)
		case '\\':
			b.WriteString(`\\`)
		case '\n':
			b.WriteString(`\n`)
		case '\r':
			b.WriteString(`\r`)
		case '\t':
			b.WriteString(`\t`)
		case '\b':
			b.WriteString(`\b`)
		case '\f':
			b.WriteString(`\f`)
		default:
			if r < 0x20 {
				fmt.Fprintf(b, `\u%04x`, r)
			} else {
				b.WriteRune(r)
			}
		}
	}
	b.WriteByte('"')
}

// pyNumber prints a JSON number as Python re-prints it after parsing:
// integers as they are, floats in repr's shortest form.
func pyNumber(s string) string {
	if !strings.ContainsAny(s, ".eE") {
		if v, err := strconv.ParseInt(s, 10, 64); err == nil {
			return strconv.FormatInt(v, 10)
		}
		return s
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return s
	}
	e := strconv.FormatFloat(f, 'e', -1, 64) // d.ddde±XX
	mant, expS, _ := strings.Cut(e, "e")
	exp, _ := strconv.Atoi(expS)
	if exp < -4 || exp >= 16 {
		sign := "+"
		if exp < 0 {
			sign, exp = "-", -exp
		}
		return fmt.Sprintf("%se%s%02d", mant, sign, exp)
	}
	out := strconv.FormatFloat(f, 'f', -1, 64)
	if !strings.ContainsAny(out, ".") {
		out += ".0"
	}
	return out
}

const defaultToolPrompt = "You have access to the following tools:\n%sUse the following format if using a tool:\n```\n" +
	"Action: tool name (one of [%s])\nAction Input: the input to the tool, in a JSON format representing the kwargs " +
	"(e.g. ```{\"input\": \"hello world\", \"num_beams\": 5}```)\n```\n"

// jsonText is a JSON value as Python's str() gives it for strings, else as JSON.
func jsonText(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case nil:
		return ""
	}
	return pyDumps(v)
}

// formatTools renders a JSON list of tool descriptions.
func formatTools(tools string) (string, error) {
	v, err := decodeOrdered(tools)
	if err != nil {
		return "", fmt.Errorf("invalid JSON in the tool description: %v", err)
	}
	list, ok := v.([]any)
	if !ok {
		if o, isObj := v.(*object); isObj {
			list = []any{o}
		} else {
			return "", fmt.Errorf("the tool description is not a list of tools")
		}
	}
	if len(list) == 0 {
		return "", nil
	}
	var text strings.Builder
	var names []string
	for i, t := range list {
		tool, ok := t.(*object)
		if !ok {
			return "", fmt.Errorf("tool %d is not an object", i)
		}
		if jsonText(tool.get("type")) == "function" {
			if f, ok := tool.get("function").(*object); ok {
				tool = f
			}
		}
		name := jsonText(tool.get("name"))
		var params strings.Builder
		if p, ok := tool.get("parameters").(*object); ok {
			required := map[string]bool{}
			if req, ok := p.get("required").([]any); ok {
				for _, r := range req {
					required[jsonText(r)] = true
				}
			}
			if props, ok := p.get("properties").(*object); ok {
				for _, pn := range props.keys {
					param, _ := props.get(pn).(*object)
					if param == nil {
						param = &object{vals: map[string]any{}}
					}
					req, enum, items := "", "", ""
					if required[pn] {
						req = ", required"
					}
					if e, ok := param.get("enum").([]any); ok && len(e) > 0 {
						var es []string
						for _, x := range e {
							es = append(es, jsonText(x))
						}
						enum = fmt.Sprintf(", should be one of [%s]", strings.Join(es, ", "))
					}
					if it, ok := param.get("items").(*object); ok {
						items = ", where each item should be " + jsonText(it.get("type"))
					}
					fmt.Fprintf(&params, "  - %s (%s%s): %s%s%s\n", pn, jsonText(param.get("type")), req, jsonText(param.get("description")), enum, items)
				}
			}
		}
		fmt.Fprintf(&text, "> Tool Name: %s\nTool Description: %s\nTool Args:\n%s\n", name, jsonText(tool.get("description")), params.String())
		names = append(names, name)
	}
	return fmt.Sprintf(defaultToolPrompt, text.String(), strings.Join(names, ", ")), nil
}

// formatFunction renders a function message (one call or a list of calls
// as JSON) as "Action: name\nAction Input: arguments" lines.
func formatFunction(content string) (string, error) {
	v, err := decodeOrdered(content)
	if err != nil {
		return "", fmt.Errorf("invalid JSON in a function message: %v", err)
	}
	calls, ok := v.([]any)
	if !ok {
		calls = []any{v}
	}
	var lines []string
	for i, c := range calls {
		call, ok := c.(*object)
		if !ok {
			return "", fmt.Errorf("function call %d is not an object", i)
		}
		if _, ok := call.vals["name"]; !ok {
			return "", fmt.Errorf("function call %d has no name", i)
		}
		lines = append(lines, fmt.Sprintf("Action: %s\nAction Input: %s", jsonText(call.get("name")), pyDumps(call.get("arguments"))))
	}
	return strings.Join(lines, "\n"), nil
}
