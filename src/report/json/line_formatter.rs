//! The report's line layout for `serde_json`: two levels indented, one site per line.

use std::io::{self, Write};

/// JSON layout of a report: containers down to [`LineFormatter::PRETTY_DEPTH`] are indented
/// like `serde_json`'s pretty printer, deeper ones written compactly. So the report's fields
/// and `totals` read as usual, and each element of `sites`, `locations` and `mappings` takes
/// one line. (Fully indented, the addresses alone take a line each: twice the bytes and the
/// rendering time.)
#[derive(Default)]
pub(crate) struct LineFormatter {
    depth: usize,
    has_value: bool,
}

impl LineFormatter {
    const PRETTY_DEPTH: usize = 2;

    fn newline(&self, w: &mut (impl Write + ?Sized), depth: usize) -> io::Result<()> {
        w.write_all(b"\n")?;
        for _ in 0..depth {
            w.write_all(b"  ")?;
        }
        Ok(())
    }

    fn begin_element(&mut self, w: &mut (impl Write + ?Sized), first: bool) -> io::Result<()> {
        if !first {
            w.write_all(b",")?;
        }
        if self.depth <= Self::PRETTY_DEPTH {
            self.newline(w, self.depth)
        } else {
            Ok(())
        }
    }

    fn end_container(&mut self, w: &mut (impl Write + ?Sized), close: &[u8]) -> io::Result<()> {
        self.depth -= 1;
        if self.has_value && self.depth < Self::PRETTY_DEPTH {
            self.newline(w, self.depth)?;
        }
        w.write_all(close)
    }
}

impl serde_json::ser::Formatter for LineFormatter {
    fn begin_array<W: ?Sized + Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.depth += 1;
        self.has_value = false;
        w.write_all(b"[")
    }

    fn end_array<W: ?Sized + Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.end_container(w, b"]")
    }

    fn begin_array_value<W: ?Sized + Write>(&mut self, w: &mut W, first: bool) -> io::Result<()> {
        self.begin_element(w, first)
    }

    fn end_array_value<W: ?Sized + Write>(&mut self, _w: &mut W) -> io::Result<()> {
        self.has_value = true;
        Ok(())
    }

    fn begin_object<W: ?Sized + Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.depth += 1;
        self.has_value = false;
        w.write_all(b"{")
    }

    fn end_object<W: ?Sized + Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.end_container(w, b"}")
    }

    fn begin_object_key<W: ?Sized + Write>(&mut self, w: &mut W, first: bool) -> io::Result<()> {
        self.begin_element(w, first)
    }

    fn begin_object_value<W: ?Sized + Write>(&mut self, w: &mut W) -> io::Result<()> {
        w.write_all(if self.depth <= Self::PRETTY_DEPTH {
            b": "
        } else {
            b":"
        })
    }

    fn end_object_value<W: ?Sized + Write>(&mut self, _w: &mut W) -> io::Result<()> {
        self.has_value = true;
        Ok(())
    }
}
