package transcode

import (
	"bytes"
	"encoding/json"
	"strconv"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/dynamicpb"
)

// maxPathDepth bounds the diagnostic walk (hostile nesting).
const maxPathDepth = 32

// fieldPath finds the path of the first field of js that protojson
// refuses, e.g. "inner.flag" or "items[2].id" ("" when it cannot tell,
// e.g. the document itself is not JSON). It runs only after a failed
// conversion, to name the field in the error.
func fieldPath(md protoreflect.MessageDescriptor, js []byte) string {
	return walk(md, js, "", 0)
}

func walk(md protoreflect.MessageDescriptor, js []byte, prefix string, depth int) string {
	if depth > maxPathDepth {
		return prefix
	}
	var obj map[string]json.RawMessage
	if json.Unmarshal(js, &obj) != nil {
		return prefix
	}
	for key, raw := range obj {
		path := key
		if prefix != "" {
			path = prefix + "." + key
		}
		fd := md.Fields().ByJSONName(key)
		if fd == nil {
			fd = md.Fields().ByTextName(key)
		}
		if fd == nil {
			return path
		}
		one := append(append(append([]byte(`{`), strconv.Quote(key)...), ':'), raw...)
		one = append(one, '}')
		if protojson.Unmarshal(one, dynamicpb.NewMessage(md)) == nil {
			continue
		}
		if fd.Message() == nil || fd.IsMap() {
			return path
		}
		if !fd.IsList() {
			if p := walk(fd.Message(), raw, path, depth+1); p != "" {
				return p
			}
			return path
		}
		var items []json.RawMessage
		if json.Unmarshal(raw, &items) != nil {
			return path
		}
		for i, it := range items {
			ip := path + "[" + strconv.Itoa(i) + "]"
			if protojson.Unmarshal(it, dynamicpb.NewMessage(fd.Message())) != nil && !bytes.Equal(bytes.TrimSpace(it), []byte("null")) {
				return walk(fd.Message(), it, ip, depth+1)
			}
		}
		return path
	}
	return prefix
}
