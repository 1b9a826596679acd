//! The Tera a campaign's templates run in: no environment, no files, and
//! bounded output.
//!
//! Tera 1.20 registers `get_env` whatever its features, so a template could
//! read `CARTERO_SMTP_PASSWORD` or the signing secret and mail it; here the
//! name is taken by a function that refuses. Tera has no function or filter
//! that reads a file, and `include`/`extends`/`import` resolve only among
//! the templates added by name (`Renderer::new` adds a campaign's own HTML,
//! text and subject, read from inside the templates folder, and nothing
//! else), so a template reaches no file by itself. `range` is replaced by a
//! bounded one (Tera's loops forever on `step_by=0` and allocates the whole
//! range at once), and every render writes into a [`Capped`] buffer, so a
//! loop cannot fill the memory. What stays trusted: a template is code the
//! campaign's author wrote, and nested loops can still spend CPU time.

use std::collections::HashMap;

use tera::{Tera, Value};

/// Refuses a template that names another one: `include`, `extends` and
/// `import` could only reach the campaign's own HTML, text and subject (no
/// file is loaded for them), and a template that includes itself recurses
/// until the stack overflows and the process aborts.
pub fn check_template(tera: &Tera, name: &str) -> Result<(), String> {
    use tera::ast::Node;
    fn walk(nodes: &[Node]) -> Option<&'static str> {
        nodes.iter().find_map(|n| match n {
            Node::Include(..) => Some("include"),
            Node::Extends(..) => Some("extends"),
            Node::ImportMacro(..) => Some("import"),
            Node::MacroDefinition(_, m, _) => walk(&m.body),
            Node::FilterSection(_, f, _) => walk(&f.body),
            Node::Block(_, b, _) => walk(&b.body),
            Node::Forloop(_, f, _) => {
                walk(&f.body).or_else(|| f.empty_body.as_deref().and_then(walk))
            }
            Node::If(i, _) => i
                .conditions
                .iter()
                .find_map(|(_, _, body)| walk(body))
                .or_else(|| i.otherwise.as_ref().and_then(|(_, body)| walk(body))),
            _ => None,
        })
    }
    let t = tera.get_template(name).map_err(|e| e.to_string())?;
    match walk(&t.ast) {
        Some(tag) => Err(format!(
            "`{{% {tag} %}}` is not available in campaign templates: each template is one file"
        )),
        None => Ok(()),
    }
}

/// Items `range` may produce in one call.
pub const MAX_RANGE: usize = 10_000;

/// A Tera with cartero's restrictions, and no templates yet.
pub fn tera() -> Tera {
    let mut tera = Tera::default();
    tera.register_function("get_env", refuse_env);
    tera.register_function("range", bounded_range);
    tera
}

fn refuse_env(_: &HashMap<String, Value>) -> tera::Result<Value> {
    Err(tera::Error::msg(
        "templates cannot read the environment (get_env is disabled: it would put secrets into mail)",
    ))
}

/// Tera's `range(end, start=0, step_by=1)`, refusing more than
/// [`MAX_RANGE`] items and a zero step.
fn bounded_range(args: &HashMap<String, Value>) -> tera::Result<Value> {
    let num = |key: &str, default: Option<u64>| -> tera::Result<u64> {
        match args.get(key) {
            Some(v) => v.as_u64().ok_or_else(|| {
                tera::Error::msg(format!(
                    "`range` received {key}={v}, but {key} must be a whole number"
                ))
            }),
            None => default
                .ok_or_else(|| tera::Error::msg(format!("`range` was called without `{key}`"))),
        }
    };
    let start = num("start", Some(0))?;
    let end = num("end", None)?;
    let step = num("step_by", Some(1))?;
    if step == 0 {
        return Err(tera::Error::msg("`range` needs step_by of at least 1"));
    }
    if start > end {
        return Err(tera::Error::msg(
            "`range` was called with start greater than end",
        ));
    }
    let count = (end - start).div_ceil(step);
    if count > MAX_RANGE as u64 {
        return Err(tera::Error::msg(format!(
            "`range` would give {count} items; templates may loop at most {MAX_RANGE} times per range"
        )));
    }
    Ok(Value::Array(
        (start..end)
            .step_by(step as usize)
            .map(Value::from)
            .collect(),
    ))
}

/// A render buffer that refuses to grow past `limit` bytes: Tera writes as
/// it renders, so a runaway loop stops at the limit instead of using the
/// memory.
pub struct Capped {
    pub buf: Vec<u8>,
    limit: usize,
}

impl Capped {
    pub fn new(limit: usize) -> Self {
        Self {
            buf: Vec::with_capacity(limit.min(4096)),
            limit,
        }
    }
}

impl std::io::Write for Capped {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        if self.buf.len() + data.len() > self.limit {
            return Err(std::io::Error::other(format!(
                "the rendered text is longer than {} bytes",
                self.limit
            )));
        }
        self.buf.extend_from_slice(data);
        Ok(data.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(src: &str) -> Result<String, String> {
        let mut t = tera();
        t.add_raw_template("t", src)
            .map_err(|e| crate::render::tera_message(&e))?;
        check_template(&t, "t")?;
        let mut ctx = tera::Context::new();
        ctx.insert("name", "CARTERO_TEST_CANARY");
        let mut out = Capped::new(64 * 1024);
        t.render_to("t", &ctx, &mut out)
            .map_err(|e| crate::render::tera_message(&e))?;
        Ok(String::from_utf8_lossy(&out.buf).into_owned())
    }

    const CANARY: &str = "canary-9f1c2e-never-in-a-message";

    fn set_canary() {
        // SAFETY: tests in this module only read the variable; no other test
        // reads or writes it.
        unsafe { std::env::set_var("CARTERO_TEST_CANARY", CANARY) };
    }

    #[test]
    fn get_env_is_refused() {
        set_canary();
        let e = render("{{ get_env(name=\"CARTERO_TEST_CANARY\") }}").unwrap_err();
        assert!(e.contains("cannot read the environment"), "{e}");
        let e = render("{{ get_env(name=name, default=\"x\") }}").unwrap_err();
        assert!(!e.contains(CANARY), "{e}");
    }

    #[test]
    fn range_is_bounded() {
        assert_eq!(
            render("{% for i in range(end=3) %}{{ i }}{% endfor %}").unwrap(),
            "012"
        );
        assert_eq!(
            render("{% for i in range(start=1, end=8, step_by=3) %}{{ i }}{% endfor %}").unwrap(),
            "147"
        );
        let e = render("{% for i in range(end=100000000) %}x{% endfor %}").unwrap_err();
        assert!(e.contains("at most 10000"), "{e}");
        let e = render("{% for i in range(end=3, step_by=0) %}x{% endfor %}").unwrap_err();
        assert!(e.contains("step_by"), "{e}");
    }

    #[test]
    fn output_is_capped() {
        let e = render(
            "{% for i in range(end=10000) %}{% for j in range(end=10000) %}xxxxxxxx{% endfor %}{% endfor %}",
        )
        .unwrap_err();
        assert!(e.contains("longer than 65536 bytes"), "{e}");
    }

    #[test]
    fn include_reaches_no_file() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("secret.txt");
        std::fs::write(&f, CANARY).unwrap();
        for src in [
            format!("{{% include \"{}\" %}}", f.display()),
            format!("{{% extends \"{}\" %}}", f.display()),
            format!("{{% import \"{}\" as m %}}", f.display()),
            "{% include \"/etc/passwd\" %}".to_string(),
            "{% include \"t\" %}".to_string(),
            "{% if true %}{% for i in range(end=1) %}{% include \"t\" %}{% endfor %}{% endif %}"
                .to_string(),
        ] {
            let r = render(&src);
            assert!(r.is_err(), "{src}: {r:?}");
            assert!(!r.unwrap_err().contains(CANARY));
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(512))]
        /// No template, however it is put together from Tera's syntax,
        /// brings the process environment into its output or its error.
        #[test]
        fn no_template_reaches_the_environment(
            parts in proptest::collection::vec(proptest::sample::select(vec![
                "{{ get_env(name=\"CARTERO_TEST_CANARY\") }}",
                "{{ get_env(name=name) }}",
                "{{ get_env(name=name, default=1) | safe }}",
                "{% set v = get_env(name=name) %}{{ v }}",
                "{% set n = \"CARTERO_TEST_\" ~ \"CANARY\" %}{{ get_env(name=n) }}",
                "{{ __tera_context }}",
                "{% include \"t\" %}",
                "{% for k in range(end=2) %}",
                "{% endfor %}",
                "{% if true %}",
                "{% endif %}",
                "{{ name }}",
                "{{ name | lower }}",
                "{{ now() | date }}",
                "{% raw %}{{ get_env(name=name) }}{% endraw %}",
                "{% filter upper %}",
                "{% endfilter %}",
                "{{ get_random(end=5) }}",
                "text ",
            ]), 0..8),
        ) {
            set_canary();
            let src: String = parts.concat();
            let out = match render(&src) {
                Ok(o) => o,
                Err(e) => e,
            };
            proptest::prop_assert!(!out.contains(CANARY), "{} -> {}", src, out);
        }
    }
}
