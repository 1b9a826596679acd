//! The recipients' pages in headless Chromium, driven by real clicks and
//! key presses, at a phone's viewport (390×844, mobile emulation) and a
//! desktop's (1280×800), on SQLite and PostgreSQL. Each step saves a
//! screenshot under target/test-artefacts/ (`PAGE-VIEWPORT-BACKEND.png`).
//!
//! The sign-up form is the hosted page (`/subscribe/{list}`): typed into,
//! ticked, submitted; the confirmation mail read from the outbox, its link
//! opened and its button clicked; then the footer link of a campaign
//! message withdraws the consent to track.

mod common;

use common::browser::{Browser, DESKTOP, PHONE, Viewport};
use common::db::TestDb;
use common::project::Project;
use common::serve::{PUBLIC_BASE, Served, outbox};

async fn scalar(db: &TestDb, sql: &str) -> i64 {
    cartero::dispatch!(&db.store, pool => {
        sqlx::query_scalar::<_, i64>(sql).fetch_one(pool).await.unwrap()
    })
}

async fn text(db: &TestDb, sql: &str) -> Option<String> {
    cartero::dispatch!(&db.store, pool => {
        sqlx::query_scalar::<_, Option<String>>(sql).fetch_one(pool).await.unwrap()
    })
}

async fn subscribed(db: &TestDb, list: &str) -> i64 {
    scalar(
        db,
        &format!(
            "SELECT COALESCE(MAX(cl.subscribed), -1) FROM contact_lists cl JOIN contacts c ON c.id = cl.contact_id \
             JOIN lists l ON l.id = cl.list_id WHERE c.email = 'ana@example.com' AND l.name = '{list}'"
        ),
    )
    .await
}

/// Ana on lists newsletter and other, sent campaign `c` on newsletter.
async fn sent_project(db: &TestDb) -> Project {
    let p = Project::new(
        db,
        "[serve]\nlisten = \"127.0.0.1:0\"\neditable_attributes = [\"city\"]\n",
    );
    let out = p.import("email,first_name,city\nana@example.com,Ana,Madrid\n");
    assert!(out.status.success(), "{}", common::project::stderr(&out));
    p.write("other.csv", "email\nana@example.com\n");
    p.ok(&[
        "contacts",
        "import",
        "other.csv",
        "--list",
        "other",
        "--consent-source",
        "second form",
    ]);
    p.ok(&["campaign", "send", "campaigns/c.toml"]);
    p
}

/// Nothing is wider than the viewport: no sideways scrolling on a phone.
async fn fits(b: &Browser) {
    let v = b
        .eval("return [document.documentElement.scrollWidth, window.innerWidth]")
        .await;
    let (content, inner) = (v[0].as_i64().unwrap(), v[1].as_i64().unwrap());
    assert!(
        content <= inner,
        "{}: the page is {content}px wide in a {inner}px viewport",
        b.viewport.name
    );
    assert_eq!(inner, i64::from(b.viewport.width), "{}", b.viewport.name);
}

async fn unsubscribe_and_preferences(db: &TestDb, vp: Viewport) {
    let backend = format!("{:?}", db.store.backend()).to_lowercase();
    let shot = |page: &str| format!("{page}-{}-{backend}", vp.name);
    let p = sent_project(db).await;
    let lu = outbox(&p)["ana@example.com"]
        .header("List-Unsubscribe")
        .unwrap();
    let unsub = lu[1..lu.find('>').unwrap()].to_string();
    let s = Served::start(&p, db).await;
    let Some(b) = Browser::start(vp, "en").await else {
        return;
    };

    // The unsubscribe page: opening it changes nothing.
    b.goto(&s.url(&unsub)).await;
    assert_eq!(b.text("h1").await, "Unsubscribe");
    fits(&b).await;
    // The stylesheet loaded (the CSP allows only this server's).
    let font = b
        .eval("return getComputedStyle(document.querySelector('button')).fontWeight")
        .await;
    assert_eq!(font, "600", "pages.css is applied");
    b.screenshot(&shot("unsubscribe")).await;
    assert_eq!(subscribed(db, "newsletter").await, 1);

    // A real click on the button.
    b.submits(b.click("#unsubscribe")).await;
    assert_eq!(b.text("h1").await, "Unsubscribed");
    assert!(
        b.text("[role=status]")
            .await
            .contains("You are unsubscribed")
    );
    fits(&b).await;
    b.screenshot(&shot("unsubscribed")).await;
    assert_eq!(subscribed(db, "newsletter").await, 0);
    assert_eq!(subscribed(db, "other").await, 1);
    assert_eq!(
        text(
            db,
            "SELECT method FROM consent_events ORDER BY id DESC LIMIT 1"
        )
        .await
        .as_deref(),
        Some("page")
    );

    // On to the preference centre by its link.
    b.submits(b.click("a[href^='../p/']")).await;
    assert_eq!(b.text("h1").await, "Your subscriptions");
    fits(&b).await;
    b.screenshot(&shot("preferences")).await;
    let newsletter = scalar(db, "SELECT id FROM lists WHERE name = 'newsletter'").await;
    assert!(!b.is_selected(&format!("#list-{newsletter}")).await);

    // By keyboard: Tab from the newsletter box reaches the next control,
    // Space ticks a box, and the focus is visible (an outline).
    b.click(&format!("#list-{newsletter}")).await; // ticked again
    assert!(b.is_selected(&format!("#list-{newsletter}")).await);
    b.press(" ").await; // Space unticks it: the focus stayed on the box
    assert!(!b.is_selected(&format!("#list-{newsletter}")).await);
    b.press(" ").await;
    assert!(b.is_selected(&format!("#list-{newsletter}")).await);
    let outline = b
        .eval("return getComputedStyle(document.activeElement).outlineStyle")
        .await;
    assert_eq!(outline, "solid", "the focused control shows a ring");
    b.click("label[for=frequency-monthly]").await; // the label selects its radio
    assert!(b.is_selected("#frequency-monthly").await);
    // Focus the Save button with the keyboard and press Enter.
    b.eval("document.getElementById('frequency-monthly').focus()")
        .await;
    let mut hops = 0;
    while b.focused_id().await != "save" {
        b.press("\u{E004}").await; // Tab
        hops += 1;
        assert!(hops < 10, "Save is not reachable by Tab");
    }
    b.submits(b.press("\u{E007}")).await; // Enter
    assert!(b.text("[role=status]").await.contains("saved"));
    assert_eq!(subscribed(db, "newsletter").await, 1);
    assert!(b.is_selected("#frequency-monthly").await);
    b.screenshot(&shot("preferences-saved")).await;

    // Correct the name: type it and submit with Enter in the field.
    b.clear("#first_name").await;
    b.submits(b.type_into("#first_name", "Anita\u{E007}")).await;
    assert!(b.text("[role=status]").await.contains("details are saved"));
    assert_eq!(
        text(
            db,
            "SELECT first_name FROM contacts WHERE email = 'ana@example.com'"
        )
        .await
        .as_deref(),
        Some("Anita")
    );
    assert_eq!(
        scalar(
            db,
            "SELECT COUNT(*) FROM contact_requests WHERE kind IN ('correction', 'frequency')"
        )
        .await,
        2
    );
    fits(&b).await;
    b.screenshot(&shot("preferences-details")).await;

    // Forget me: the box, then the button.
    b.click("#forget-confirm").await;
    b.submits(b.click("#forget")).await;
    assert!(b.text("[role=status]").await.contains("recorded"));
    assert_eq!(
        scalar(
            db,
            "SELECT COUNT(*) FROM contact_requests WHERE kind = 'erasure' AND status = 'open'"
        )
        .await,
        1
    );
    b.quit().await;
    s.stop().await;
}

#[tokio::test]
async fn unsubscribe_page_and_preference_centre_by_click_and_keyboard_on_phone_and_desktop() {
    // A fresh database for each viewport: the first run changes Ana.
    for vp in [PHONE, DESKTOP] {
        for db in TestDb::all().await {
            unsubscribe_and_preferences(&db, vp).await;
        }
    }
}

#[tokio::test]
async fn the_pages_speak_spanish_to_a_spanish_browser() {
    let db = TestDb::all().await.into_iter().next().unwrap();
    let p = sent_project(&db).await;
    let lu = outbox(&p)["ana@example.com"]
        .header("List-Unsubscribe")
        .unwrap();
    let s = Served::start(&p, &db).await;
    let Some(b) = Browser::start(PHONE, "es").await else {
        return;
    };
    b.goto(&s.url(&lu[1..lu.find('>').unwrap()])).await;
    assert_eq!(b.text("h1").await, "Darse de baja");
    assert_eq!(b.eval("return document.documentElement.lang").await, "es");
    b.screenshot("unsubscribe-phone-es").await;
    b.quit().await;
    s.stop().await;
}

async fn list_state(db: &TestDb, email: &str, list: &str) -> i64 {
    scalar(
        db,
        &format!(
            "SELECT COALESCE(MAX(cl.subscribed), -1) FROM contact_lists cl JOIN contacts c ON c.id = cl.contact_id \
             JOIN lists l ON l.id = cl.list_id WHERE c.email = '{email}' AND l.name = '{list}'"
        ),
    )
    .await
}

const CONSENT: &str = "Yes, send me the Shop newsletter. I can unsubscribe at any time.";

async fn signup_confirm_and_stop_tracking(db: &TestDb, vp: Viewport) {
    let backend = format!("{:?}", db.store.backend()).to_lowercase();
    let shot = |page: &str| format!("{page}-{}-{backend}", vp.name);
    let p = Project::new(
        db,
        &format!(
            "[serve]\nlisten = \"127.0.0.1:0\"\nip_storage = \"full\"\n\n\
             [signup]\nfrom = \"Shop <news@shop.example>\"\n\n\
             [lists.newsletter]\nconsent_text = \"{CONSENT}\"\ntracking = \"personal\"\n"
        ),
    );
    p.write(
        "templates/c.html",
        "<html><body><p>Hola {{ contact.first_name }}</p>\
         <p><a href=\"https://shop.example/spring\">Spring</a></p>\
         <p><a href=\"{{ tracking_optout_url }}\">Stop tracking me</a> \
         <a href=\"{{ unsubscribe_url }}\">Unsubscribe</a></p></body></html>\n",
    );
    let s = Served::start(&p, db).await;
    let Some(b) = Browser::start(vp, "en").await else {
        return;
    };

    // The form: typed with key presses, both boxes ticked (one by its label).
    b.goto(&format!("{}/subscribe/newsletter", s.base)).await;
    assert_eq!(b.text("h1").await, "Subscribe");
    assert!(
        b.text("label[for=consent]")
            .await
            .contains("Shop newsletter")
    );
    fits(&b).await;
    let font = b
        .eval("return getComputedStyle(document.querySelector('button')).fontWeight")
        .await;
    assert_eq!(font, "600", "pages.css is applied");
    let honeypot = b
        .eval("return document.getElementById('website').getBoundingClientRect().right")
        .await;
    assert!(
        honeypot.as_f64().unwrap() < 0.0,
        "the honeypot is off-screen"
    );
    b.click("#email").await;
    b.type_into("#email", "ana@example.com").await;
    b.press("\u{E004}").await; // Tab to the name
    assert_eq!(b.focused_id().await, "name");
    b.press("Ana").await;
    b.click("label[for=consent]").await;
    b.click("#tracking").await;
    assert!(b.is_selected("#consent").await && b.is_selected("#tracking").await);
    b.screenshot(&shot("signup")).await;
    b.submits(b.click("#subscribe")).await;
    assert_eq!(b.text("h1").await, "Check your inbox");
    assert!(b.text("main").await.contains("confirmation link"));
    fits(&b).await;
    b.screenshot(&shot("signup-sent")).await;
    assert_eq!(list_state(db, "ana@example.com", "newsletter").await, -1);

    // The mail in the outbox; its link in the browser; the button.
    let files = common::serve::wait_for_files(&p.file("outbox/signup"), 1).await;
    assert_eq!(files.len(), 1);
    let raw = std::fs::read(&files[0]).unwrap();
    let msg = mail_parser::MessageParser::default().parse(&raw).unwrap();
    let body = msg.body_text(0).unwrap().into_owned();
    let start = body
        .find(&format!("{PUBLIC_BASE}/confirm/"))
        .unwrap_or_else(|| panic!("no link in {body}"));
    let link = body[start..].split_whitespace().next().unwrap().to_string();
    b.goto(&s.url(&link)).await;
    assert_eq!(b.text("h1").await, "Confirm your subscription");
    assert!(b.text("dl").await.contains("ana@example.com"));
    fits(&b).await;
    b.screenshot(&shot("confirm")).await;
    assert_eq!(list_state(db, "ana@example.com", "newsletter").await, -1);
    b.submits(b.click("#confirm")).await;
    assert_eq!(b.text("h1").await, "Subscription confirmed");
    assert!(b.text("[role=status]").await.contains("you are subscribed"));
    fits(&b).await;
    b.screenshot(&shot("confirmed")).await;
    assert_eq!(list_state(db, "ana@example.com", "newsletter").await, 1);
    assert_eq!(
        list_state(db, "ana@example.com", "tracking:newsletter").await,
        1
    );
    assert_eq!(
        scalar(
            db,
            "SELECT COUNT(*) FROM consent_events WHERE action = 'grant' AND method = 'double-opt-in'"
        )
        .await,
        2
    );
    let ev = text(
        db,
        "SELECT e.evidence FROM consent_events e JOIN lists l ON l.id = e.list_id WHERE l.name = 'newsletter'",
    )
    .await
    .unwrap();
    let ev: serde_json::Value = serde_json::from_str(&ev).unwrap();
    assert!(
        ev["confirm_user_agent"]
            .as_str()
            .unwrap()
            .contains("Chrome"),
        "{ev}"
    );
    assert_eq!(
        text(
            db,
            "SELECT first_name FROM contacts WHERE email = 'ana@example.com'"
        )
        .await
        .as_deref(),
        Some("Ana")
    );
    s.stop().await;

    // A campaign to her; its footer link withdraws the consent to track.
    p.ok(&["campaign", "send", "campaigns/c.toml"]);
    let mail = outbox(&p);
    let optout = mail["ana@example.com"]
        .urls(&format!("{PUBLIC_BASE}/u/"))
        .into_iter()
        .find(|u| u.ends_with("/tracking"))
        .expect("the footer link");
    let s = Served::start(&p, db).await;
    b.goto(&s.url(&optout)).await;
    assert_eq!(b.text("h1").await, "Stop tracking my opens and clicks");
    fits(&b).await;
    b.screenshot(&shot("tracking")).await;
    b.submits(b.click("#stop-tracking")).await;
    assert!(
        b.text("[role=status]")
            .await
            .contains("we no longer record your opens and clicks")
    );
    b.screenshot(&shot("tracking-stopped")).await;
    assert_eq!(
        list_state(db, "ana@example.com", "tracking:newsletter").await,
        0
    );
    assert_eq!(list_state(db, "ana@example.com", "newsletter").await, 1);
    // On to the preference centre by the page's link: the consent to track
    // is shown by what it means, now unticked.
    b.submits(b.click("a[href^='../../p/']")).await;
    assert_eq!(b.text("h1").await, "Your subscriptions");
    let tracking = scalar(
        db,
        "SELECT id FROM lists WHERE name = 'tracking:newsletter'",
    )
    .await;
    assert_eq!(
        b.text(&format!("label[for=list-{tracking}]")).await,
        "Let us see when you open and click (newsletter)"
    );
    assert!(!b.is_selected(&format!("#list-{tracking}")).await);
    b.quit().await;
    s.stop().await;
}

#[tokio::test]
async fn sign_up_confirm_and_stop_tracking_by_keyboard_and_click_on_phone_and_desktop() {
    for vp in [PHONE, DESKTOP] {
        for db in TestDb::all().await {
            signup_confirm_and_stop_tracking(&db, vp).await;
        }
    }
}
