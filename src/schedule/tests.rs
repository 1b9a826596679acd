use super::*;
use crate::campaign::CampaignError;

fn ms(rfc: &str) -> Millis {
    crate::domain::time::parse_instant(rfc, 0).expect("a valid instant")
}

fn campaign(extra: &str) -> Result<Campaign, CampaignError> {
    let d = tempfile::tempdir().unwrap();
    std::fs::write(d.path().join("a.html"), "<p>Hi</p>").unwrap();
    let text = format!(
        "name = \"Weekly\"\nsubject = \"News\"\nfrom = \"Shop <news@shop.example>\"\nlist = \"newsletter\"\n{extra}\n[template]\nhtml = \"a.html\"\n"
    );
    Campaign::parse(&text, Path::new("campaigns/weekly.toml"), d.path())
}

fn when(extra: &str) -> When {
    campaign(extra).unwrap().when.expect("a scheduled campaign")
}

#[test]
fn a_weekly_cron_follows_the_time_zone_across_daylight_saving() {
    let w = when("schedule = \"0 9 * * MON\"\ntimezone = \"Europe/Madrid\"");
    let (occ, passed) = occurrences(
        &w.timing,
        ms("2026-03-20T00:00:00Z"),
        ms("2026-04-10T00:00:00Z"),
    );
    assert_eq!(passed, 0);
    let keys: Vec<String> = occ.into_iter().map(occurrence_key).collect();
    // 09:00 in Madrid: UTC+1 until 29 March 2026, UTC+2 after.
    assert_eq!(
        keys,
        [
            "2026-03-23T08:00:00Z",
            "2026-03-30T07:00:00Z",
            "2026-04-06T07:00:00Z"
        ]
    );
}

#[test]
fn the_window_is_open_before_and_closed_after() {
    let w = when("schedule = \"0 9 * * MON\"");
    let monday = ms("2026-12-07T09:00:00Z");
    assert_eq!(
        occurrences(&w.timing, monday, monday + 1).0,
        Vec::<Millis>::new()
    );
    assert_eq!(occurrences(&w.timing, monday - 1, monday).0, vec![monday]);
    assert_eq!(
        next_after(&w.timing, monday),
        Some(ms("2026-12-14T09:00:00Z"))
    );
}

#[test]
fn send_at_is_one_occurrence_with_its_offset_or_time_zone() {
    let w = when("send_at = 2026-12-01T09:00:00+01:00");
    let at = ms("2026-12-01T08:00:00Z");
    assert_eq!(occurrences(&w.timing, at - 1, at + 1).0, vec![at]);
    assert_eq!(occurrences(&w.timing, at, at + 1).0, Vec::<Millis>::new());
    assert_eq!(next_after(&w.timing, at), None);
    let local = when("send_at = 2026-07-01T09:00:00\ntimezone = \"Europe/Madrid\"");
    assert_eq!(
        next_after(&local.timing, 0),
        Some(ms("2026-07-01T07:00:00Z"))
    );
}

#[test]
fn a_long_outage_keeps_the_latest_occurrences_and_counts_the_rest() {
    let w = when("schedule = \"*/1 * * * *\"");
    let from = ms("2026-12-01T00:00:00Z");
    let (occ, passed) = occurrences(&w.timing, from, from + 2 * 24 * 3_600_000);
    assert_eq!(occ.len(), MAX_OCCURRENCES);
    assert_eq!(passed as usize + occ.len(), 2 * 24 * 60);
    assert_eq!(*occ.last().unwrap(), from + 2 * 24 * 3_600_000);
}

#[test]
fn missed_send_sends_only_the_latest_missed_occurrence_late() {
    let w = when("schedule = \"0 9 * * *\"\nmissed = \"send\"");
    let d1 = ms("2026-12-01T09:00:00Z");
    let day = 24 * 3_600_000;
    let now = d1 + 2 * day + 3_600_000; // three occurrences missed, the last by an hour
    let got = decide(&w, &[d1, d1 + day, d1 + 2 * day], now);
    assert!(matches!(got[0].1, Decision::Skip(ref why) if why.contains("later occurrence")));
    assert!(matches!(got[1].1, Decision::Skip(_)));
    assert_eq!(got[2].1, Decision::SendLate);
    // When the latest is on time, nothing is sent late.
    let got = decide(&w, &[d1, d1 + day], d1 + day + 60_000);
    assert!(matches!(got[0].1, Decision::Skip(_)));
    assert_eq!(got[1].1, Decision::Send);
}

#[test]
fn missed_skip_skips_every_missed_occurrence_with_its_reason() {
    let w = when("schedule = \"0 9 * * *\"\nmissed = \"skip\"\nmissed_after_minutes = 30");
    let d1 = ms("2026-12-01T09:00:00Z");
    let got = decide(&w, &[d1], d1 + 31 * 60_000);
    match &got[0].1 {
        Decision::Skip(why) => assert!(
            why.contains("missed = \"skip\"") && why.contains("31 min"),
            "{why}"
        ),
        other => panic!("{other:?}"),
    }
    assert_eq!(decide(&w, &[d1], d1 + 29 * 60_000)[0].1, Decision::Send);
}

#[test]
fn occurrence_keys_sort_as_time_does() {
    assert_eq!(
        occurrence_key(ms("2026-12-07T08:00:00Z")),
        "2026-12-07T08:00:00Z"
    );
    assert!(
        occurrence_key(ms("2026-12-07T08:00:00Z")) < occurrence_key(ms("2027-01-01T00:00:00Z"))
    );
}

fn error_of(extra: &str) -> String {
    campaign(extra).unwrap_err().to_string()
}

#[test]
fn bad_timing_is_refused_at_its_place() {
    // The keys start on line 5 of the generated file.
    let e = error_of("schedule = \"0 9 * * 1\"");
    assert!(
        e.starts_with("campaigns/weekly.toml:5:12:") && e.contains("by name"),
        "{e}"
    );
    let e = error_of("schedule = \"0 9 * *\"");
    assert!(e.contains("4 fields"), "{e}");
    let e = error_of("schedule = \"* 0 9 * * MON\"");
    assert!(e.contains("once a minute"), "{e}");
    let e = error_of("schedule = \"0 25 * * MON\"");
    assert!(e.contains("not a cron expression"), "{e}");
    let e = error_of("schedule = \"0 9 * * MON\"\nsend_at = 2026-12-01T09:00:00Z");
    assert!(
        e.starts_with("campaigns/weekly.toml:6:11:") && e.contains("not both"),
        "{e}"
    );
    let e = error_of("schedule = \"0 9 * * MON\"\ntimezone = \"Europe/Madird\"");
    assert!(
        e.starts_with("campaigns/weekly.toml:6:12:") && e.contains("unknown time zone"),
        "{e}"
    );
    let e = error_of("send_at = 2026-12-01T09:00:00");
    assert!(e.contains("no UTC offset"), "{e}");
    let e = error_of("send_at = 2026-12-01");
    assert!(e.contains("a date and a time"), "{e}");
    let e = error_of("send_at = 2026-03-29T02:30:00\ntimezone = \"Europe/Madrid\"");
    assert!(e.contains("does not exist"), "{e}");
    let e = error_of("timezone = \"UTC\"");
    assert!(e.contains("needs `schedule` or `send_at`"), "{e}");
    let e = error_of("schedule = \"0 9 * * MON\"\nmissed = \"later\"");
    assert!(e.contains("`missed`"), "{e}");
    let e = error_of("schedule = \"0 9 * * MON\"\nmissed_after_minutes = 0");
    assert!(e.contains("missed_after_minutes"), "{e}");
    assert!(campaign("").unwrap().when.is_none());
}
