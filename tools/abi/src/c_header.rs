//! A C header as clang sees it, read through bindgen: its structs with clang's sizes, alignments
//! and field offsets, its integer and string macros, its typedefs and its functions.
//!
//! bindgen runs libclang over the header and emits Rust source whose layout assertions
//! (`["Size of T"][size_of::<T>() - 104usize];`, `["Offset of field: T::f"][... - 16usize];`)
//! carry clang's numbers. That source is parsed with `syn`, so nothing here depends on how
//! bindgen formats or wraps its output.
//!
//! libclang is loaded at run time: without it, [`parse_header`] returns an error that says so.

use std::collections::BTreeMap;
use std::path::Path;

use quote::ToTokens;

/// Everything a header declares itself (not what it includes).
#[derive(Debug, Default)]
pub struct Header {
    /// Structs and unions by name.
    pub structs: BTreeMap<String, Struct>,
    /// Constants (`#define NAME 42`, `#define NAME "text"`, enumerators): the value as Rust
    /// tokens, e.g. `42` or `b"1.0.0\0"`.
    pub constants: BTreeMap<String, String>,
    /// Typedefs other than of structs, by name: the aliased type as normalised Rust tokens
    /// (function pointers without parameter names).
    pub typedefs: BTreeMap<String, String>,
    /// Function declarations by name: the signature as normalised Rust tokens.
    pub functions: BTreeMap<String, String>,
}

/// One struct or union.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Struct {
    /// `sizeof`, or `None` for an incomplete (opaque) type.
    pub size: Option<usize>,
    /// `_Alignof`, or `None` for an incomplete type.
    pub align: Option<usize>,
    /// The fields in declaration order.
    pub fields: Vec<Field>,
}

/// One field of a struct.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Field {
    /// The field's name.
    pub name: String,
    /// Its type as normalised Rust tokens, e.g. `* const :: std :: os :: raw :: c_char`.
    pub ty: String,
    /// `offsetof`, when clang reported it.
    pub offset: Option<usize>,
}

impl Header {
    /// The layouts of the complete structs as `size of T`, `align of T` and `offset of T.f`
    /// keys, the form the Rust side of the layout tests produces too.
    pub fn layout_map(&self) -> BTreeMap<String, usize> {
        let mut m = BTreeMap::new();
        for (name, s) in &self.structs {
            let (Some(size), Some(align)) = (s.size, s.align) else {
                continue;
            };
            m.insert(format!("size of {name}"), size);
            m.insert(format!("align of {name}"), align);
            for f in &s.fields {
                if let Some(offset) = f.offset {
                    m.insert(format!("offset of {name}.{}", f.name), offset);
                }
            }
        }
        m
    }
}

/// Escapes `text` for the regular expressions bindgen's allowlists take.
fn regex_escape(text: &str) -> String {
    let mut out = String::new();
    for c in text.chars() {
        if "\\.+*?()|[]{}^$#&-~".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Runs bindgen over `header` (with layout tests) and returns the generated Rust source,
/// restricted to the items the header itself declares. The header's own folder and `search`
/// are searched for what it includes.
pub fn bindgen_source(header: &Path, search: &[std::path::PathBuf]) -> Result<String, String> {
    let header = header
        .canonicalize()
        .map_err(|e| format!("{}: {e}", header.display()))?;
    let text = header.to_str().ok_or("header path is not UTF-8")?;
    let dir = header.parent().expect("a file has a parent");
    let bindings = bindgen::Builder::default()
        .header(text)
        .clang_arg(format!("-I{}", dir.display()))
        .clang_args(search.iter().map(|d| format!("-I{}", d.display())))
        .allowlist_file(regex_escape(text))
        .allowlist_recursively(false)
        .layout_tests(true)
        .formatter(bindgen::Formatter::None)
        .generate()
        .map_err(|e| format!("bindgen {}: {e}", header.display()))?;
    Ok(bindings.to_string())
}

/// Loads libclang (which bindgen needs, and would panic without), or says how to install it.
pub fn ensure_libclang() -> Result<(), String> {
    if clang_sys::is_loaded() {
        return Ok(());
    }
    clang_sys::load().map_err(|e| {
        format!("reading C headers needs libclang (Debian/Ubuntu package libclang-dev): {e}")
    })
}

/// Parses `header` with clang (through bindgen).
pub fn parse_header(header: &Path) -> Result<Header, String> {
    parse_header_in(header, &[])
}

/// Parses `header` with clang (through bindgen), searching `search` too for what it includes
/// (the folder of `calc_plugin.h`, for an interface's header).
pub fn parse_header_in(header: &Path, search: &[std::path::PathBuf]) -> Result<Header, String> {
    ensure_libclang()?;
    let source = bindgen_source(header, search)?;
    parse_bindings(&source).map_err(|e| format!("{}: {e}", header.display()))
}

fn tokens(t: &impl ToTokens) -> String {
    t.to_token_stream().to_string()
}

/// A type with the parameter names of function pointer types dropped (renaming a parameter
/// changes nothing in the ABI).
fn normalise(ty: &syn::Type) -> syn::Type {
    let mut ty = ty.clone();
    strip_names(&mut ty);
    ty
}

fn strip_names(ty: &mut syn::Type) {
    match ty {
        syn::Type::BareFn(f) => {
            for arg in &mut f.inputs {
                arg.name = None;
                strip_names(&mut arg.ty);
            }
            if let syn::ReturnType::Type(_, out) = &mut f.output {
                strip_names(out);
            }
        }
        syn::Type::Ptr(p) => strip_names(&mut p.elem),
        syn::Type::Array(a) => strip_names(&mut a.elem),
        syn::Type::Path(p) => {
            for seg in &mut p.path.segments {
                if let syn::PathArguments::AngleBracketed(args) = &mut seg.arguments {
                    for arg in &mut args.args {
                        if let syn::GenericArgument::Type(t) = arg {
                            strip_names(t);
                        }
                    }
                }
            }
        }
        _ => {}
    }
}

fn int_literal(expr: &syn::Expr) -> Option<usize> {
    match expr {
        syn::Expr::Lit(syn::ExprLit {
            lit: syn::Lit::Int(i),
            ..
        }) => i.base10_parse().ok(),
        _ => None,
    }
}

/// One bindgen layout assertion, `["Size of T"][size_of::<T>() - 8usize];`: the label and the
/// number clang computed.
fn layout_assertion(stmt: &syn::Stmt) -> Option<(String, usize)> {
    let syn::Stmt::Expr(syn::Expr::Index(index), _) = stmt else {
        return None;
    };
    let syn::Expr::Array(label) = &*index.expr else {
        return None;
    };
    let Some(syn::Expr::Lit(syn::ExprLit {
        lit: syn::Lit::Str(label),
        ..
    })) = label.elems.first()
    else {
        return None;
    };
    let syn::Expr::Binary(diff) = &*index.index else {
        return None;
    };
    Some((label.value(), int_literal(&diff.right)?))
}

/// Reads the Rust source bindgen generated into a [`Header`].
pub fn parse_bindings(source: &str) -> Result<Header, String> {
    let file = syn::parse_file(source).map_err(|e| format!("parsing bindgen's output: {e}"))?;
    let mut h = Header::default();
    let mut layouts = Vec::new();
    for item in &file.items {
        match item {
            syn::Item::Struct(s) => {
                let fields = s
                    .fields
                    .iter()
                    .filter_map(|f| {
                        Some(Field {
                            name: f.ident.as_ref()?.to_string(),
                            ty: tokens(&normalise(&f.ty)),
                            offset: None,
                        })
                    })
                    .collect();
                h.structs.insert(
                    s.ident.to_string(),
                    Struct {
                        fields,
                        ..Struct::default()
                    },
                );
            }
            syn::Item::Union(u) => {
                let fields = u
                    .fields
                    .named
                    .iter()
                    .filter_map(|f| {
                        Some(Field {
                            name: f.ident.as_ref()?.to_string(),
                            ty: tokens(&normalise(&f.ty)),
                            offset: None,
                        })
                    })
                    .collect();
                h.structs.insert(
                    u.ident.to_string(),
                    Struct {
                        fields,
                        ..Struct::default()
                    },
                );
            }
            syn::Item::Const(c) if c.ident == "_" => {
                if let syn::Expr::Block(block) = &*c.expr {
                    layouts.extend(block.block.stmts.iter().filter_map(layout_assertion));
                }
            }
            syn::Item::Const(c) => {
                h.constants.insert(c.ident.to_string(), tokens(&c.expr));
            }
            syn::Item::Type(t) => {
                h.typedefs
                    .insert(t.ident.to_string(), tokens(&normalise(&t.ty)));
            }
            syn::Item::ForeignMod(m) => {
                for f in &m.items {
                    if let syn::ForeignItem::Fn(f) = f {
                        let mut sig = f.sig.clone();
                        for arg in &mut sig.inputs {
                            if let syn::FnArg::Typed(arg) = arg {
                                *arg.pat = syn::parse_quote!(_);
                                strip_names(&mut arg.ty);
                            }
                        }
                        if let syn::ReturnType::Type(_, out) = &mut sig.output {
                            strip_names(out);
                        }
                        h.functions.insert(f.sig.ident.to_string(), tokens(&sig));
                    }
                }
            }
            _ => {}
        }
    }
    for (label, n) in layouts {
        let (name, what) = if let Some(rest) = label.strip_prefix("Offset of field: ") {
            let (ty, field) = rest
                .split_once("::")
                .ok_or_else(|| format!("unexpected layout assertion {label:?}"))?;
            (ty.to_string(), Some(field.to_string()))
        } else if let Some(ty) = label.strip_prefix("Size of ") {
            (ty.to_string(), None)
        } else if let Some(ty) = label.strip_prefix("Alignment of ") {
            (ty.to_string(), None)
        } else {
            return Err(format!("unexpected layout assertion {label:?}"));
        };
        let s = h
            .structs
            .get_mut(&name)
            .ok_or_else(|| format!("layout assertion {label:?} for an unknown struct"))?;
        match what {
            Some(field) => {
                s.fields
                    .iter_mut()
                    .find(|f| f.name == field)
                    .ok_or_else(|| format!("layout assertion {label:?} for an unknown field"))?
                    .offset = Some(n);
            }
            None if label.starts_with("Size of ") => s.size = Some(n),
            None => s.align = Some(n),
        }
    }
    Ok(h)
}

/// Every `*.h` directly in `dir`, sorted.
pub fn headers_in(dir: &Path) -> Result<Vec<std::path::PathBuf>, String> {
    let entries = std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let mut headers = Vec::new();
    for entry in entries {
        let path = entry.map_err(|e| format!("{}: {e}", dir.display()))?.path();
        if path.extension().is_some_and(|x| x == "h") {
            headers.push(path);
        }
    }
    headers.sort();
    Ok(headers)
}
