//! `campaign check` lists the attributes a template or the segment names
//! that no contact has, with the template's file:line:col and the nearest
//! existing name; `segment count` warns the same way (issue 16 items 16
//! and 17). Real binary, both backends.

mod common;

use common::db::TestDb;
use common::project::{Project, stderr};

#[tokio::test]
async fn a_misspelt_attribute_is_named_with_its_place_and_the_nearest_name() {
    for db in TestDb::all().await {
        let p = Project::new(&db, "");
        let out = p.import("email,first_name,city,country\nana@example.com,Ana,Madrid,ES\nbob@example.com,Bob,Lisboa,PT\n");
        assert!(out.status.success(), "{}", stderr(&out));
        // The typo sits inside `| default(...)`: every render succeeds.
        p.write(
            "templates/c.html",
            "<html><body><p>Hola {{ contact.first_name }}</p>\n\
             <p>{{ contact.attributes.city }}, {{ contact.attributes.contry | default(value=\"ES\") }}</p>\n\
             <p><a href=\"{{ unsubscribe_url }}\">Unsubscribe</a></p></body></html>\n",
        );
        p.write(
            "campaigns/c.toml",
            "name = \"Spring\"\nsubject = \"Hola\"\nfrom = \"Shop <news@shop.example>\"\n\
             list = \"newsletter\"\n\n[segment]\nfilter = 'attributes.contry == \"ES\" or attributes.city == \"Lisboa\"'\n\n\
             [template]\nhtml = \"c.html\"\n",
        );
        let out = p.run(&["campaign", "check", "campaigns/c.toml"]);
        let err = stderr(&out);
        assert!(
            out.status.success(),
            "warnings only: {err}{}",
            common::project::stdout(&out)
        );
        let html = p.file("templates/c.html");
        assert!(
            err.contains(&format!(
                "warning: {}:2:57: no contact has the attribute `contact.attributes.contry`: \
                 did you mean `contact.attributes.country`?",
                html.display()
            )),
            "{err}"
        );
        assert!(
            !err.contains("attributes.city`"),
            "city exists, no warning: {err}"
        );
        assert!(
            err.contains(
                "no contact has the attribute `contry`: did you mean `attributes.country`?"
            ),
            "the segment's typo too: {err}"
        );

        let out = p.run(&[
            "segment",
            "count",
            "--filter",
            "attributes.countr == \"ES\"",
        ]);
        let err = stderr(&out);
        assert!(out.status.success(), "{err}");
        assert!(
            err.contains("filter line 1 column 12: no contact has the attribute `countr`: did you mean `attributes.country`?"),
            "{err}"
        );
        let out = p.run(&[
            "segment",
            "count",
            "--filter",
            "attributes.country == \"ES\"",
        ]);
        assert!(!stderr(&out).contains("warning"), "{}", stderr(&out));
    }
}
