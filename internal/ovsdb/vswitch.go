package ovsdb

// DB is the database Open vSwitch keeps its configuration in.
const DB = "Open_vSwitch"
