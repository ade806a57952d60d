package ovsdb

import (
	"testing"
)

func TestListDBsAndSchema(t *testing.T) {
	e := newEnv(t, false)
	dbs, err := e.c.ListDBs(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, d := range dbs {
		found = found || d == DB
	}
	if !found {
		t.Fatalf("list_dbs = %v, want %s among them", dbs, DB)
	}
	s, err := e.c.GetSchema(ctx(t), DB)
	if err != nil {
		t.Fatal(err)
	}
	if s.Name != DB || s.Version == "" {
		t.Fatalf("schema %q version %q", s.Name, s.Version)
	}
	tag, ok := s.Column("Port", "tag")
	if !ok || tag.Type.Key.Type != "integer" || tag.Type.Min != 0 || tag.Type.Max != 1 ||
		tag.Type.Key.MinInteger == nil || *tag.Type.Key.MinInteger != 0 || *tag.Type.Key.MaxInteger != 4095 {
		t.Errorf("Port.tag = %+v", tag)
	}
	ports, _ := s.Column("Bridge", "ports")
	if ports.Type.Key.RefTable != "Port" || ports.Type.Max != Unlimited {
		t.Errorf("Bridge.ports = %+v", ports)
	}
	ext, _ := s.Column("Bridge", "external_ids")
	if ext.Type.Value == nil || ext.Type.Value.Type != "string" {
		t.Errorf("Bridge.external_ids = %+v", ext)
	}
	mode, _ := s.Column("Port", "vlan_mode")
	if len(mode.Type.Key.Enum) != 5 {
		t.Errorf("Port.vlan_mode enum = %v", mode.Type.Key.Enum)
	}
	if !s.Tables["Open_vSwitch"].IsRoot || s.Tables["Bridge"].IsRoot {
		t.Errorf("isRoot: Open_vSwitch %v, Bridge %v", s.Tables["Open_vSwitch"].IsRoot, s.Tables["Bridge"].IsRoot)
	}
	if _, err := e.c.GetSchema(ctx(t), "NoSuchDB"); err == nil {
		t.Error("get_schema of an unknown database succeeded")
	} else {
		t.Log(err)
	}
}
