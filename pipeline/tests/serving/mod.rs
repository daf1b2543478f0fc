//! The serving layout (`pipeline::serving`): the file format, its refusal of
//! damaged files, and the layout a run stores.

use bytes::Bytes;
use pipeline::serving::format::{Layout, LayoutError, LayoutWriter, list_record, page_json};
use serde::Serialize;

fn small() -> Vec<u8> {
    let mut w = LayoutWriter::new(Vec::new());
    w.begin("a").unwrap();
    let items = vec![br#"{"x":1}"#.to_vec(), br#"{"x":2}"#.to_vec()];
    w.add(b"k1", &list_record(b"{\"page\":1}", &items).unwrap())
        .unwrap();
    w.add(b"k2", &list_record(b"", &[]).unwrap()).unwrap();
    w.begin("b").unwrap();
    w.add(b"only", b"value").unwrap();
    w.finish("run-1").unwrap()
}

#[test]
fn records_are_found_by_key_and_lists_read_in_place() {
    let layout = Layout::open(Bytes::from(small())).unwrap();
    assert_eq!(layout.run_id(), "run-1");
    assert_eq!(layout.get("b", b"only").unwrap(), &b"value"[..]);
    assert!(layout.get("b", b"other").is_none());
    assert!(layout.get("absent", b"only").is_none());
    let keys: Vec<&[u8]> = layout.section("a").keys().collect();
    assert_eq!(keys, vec![&b"k1"[..], &b"k2"[..]]);
    let list = layout.list("a", b"k1").unwrap().unwrap();
    assert_eq!(list.len(), 2);
    assert_eq!(list.item(1), br#"{"x":2}"#);
    assert_eq!(list.default_page(), &b"{\"page\":1}"[..]);
    let decoded: Vec<serde_json::Value> = list.decode(1..usize::MAX).unwrap();
    assert_eq!(decoded, vec![serde_json::json!({"x": 2})]);
    let empty = layout.list("a", b"k2").unwrap().unwrap();
    assert!(empty.is_empty() && empty.default_page().is_empty());
}

/// Records go in as a run's parts give them; each section's index is
/// sorted at the end, and a key written twice to a section is refused.
#[test]
fn keys_in_any_order_are_indexed_sorted_and_a_key_twice_is_refused() {
    let mut w = LayoutWriter::new(Vec::new());
    w.begin("a").unwrap();
    w.add(b"c", b"3").unwrap();
    w.begin("b").unwrap();
    w.add(b"x", b"other").unwrap();
    w.resume("a").unwrap();
    w.add(b"a", b"1").unwrap();
    w.add(b"b", b"2").unwrap();
    let layout = Layout::open(Bytes::from(w.finish("run-1").unwrap())).unwrap();
    let keys: Vec<&[u8]> = layout.section("a").keys().collect();
    assert_eq!(keys, vec![&b"a"[..], &b"b"[..], &b"c"[..]]);
    for (k, v) in [("a", "1"), ("b", "2"), ("c", "3")] {
        assert_eq!(layout.get("a", k.as_bytes()).unwrap(), v.as_bytes());
    }
    assert_eq!(layout.get("b", b"x").unwrap(), &b"other"[..]);

    let mut w = LayoutWriter::new(Vec::new());
    w.begin("a").unwrap();
    w.add(b"k", b"").unwrap();
    w.begin("b").unwrap();
    w.add(b"k", b"").unwrap();
    w.resume("a").unwrap();
    w.add(b"k", b"").unwrap();
    let err = w.finish("run-1").unwrap_err().to_string();
    assert!(err.contains("section a: key \"k\" written twice"), "{err}");
    let mut w = LayoutWriter::new(Vec::new());
    w.begin("a").unwrap();
    assert!(w.begin("a").is_err(), "a section begun twice");
}

#[test]
fn a_truncated_or_altered_file_is_refused_or_read_without_a_panic() {
    let good = small();
    for cut in 0..good.len() {
        let err = Layout::open(Bytes::from(good[..cut].to_vec())).unwrap_err();
        assert!(
            matches!(err, LayoutError::Damaged(_)),
            "cut at {cut}: {err}"
        );
    }
    // Every single byte changed: opening either refuses the file or gives
    // a layout whose every read answers (maybe wrongly), never panics.
    for at in 0..good.len() {
        for value in [0u8, 0x7f, 0xff] {
            let mut bad = good.clone();
            bad[at] = value;
            if let Ok(layout) = Layout::open(Bytes::from(bad)) {
                for (s, k) in [("a", &b"k1"[..]), ("a", b"k2"), ("b", b"only")] {
                    let _ = layout.get(s, k);
                    if let Ok(Some(list)) = layout.list(s, k) {
                        for i in 0..list.len() + 1 {
                            let _ = list.item(i);
                        }
                        let _ = list.default_page();
                        let _ = list.decode::<serde_json::Value>(0..usize::MAX);
                    }
                }
            }
        }
    }
}

#[test]
fn a_page_is_the_about_fields_then_the_window() {
    #[derive(Serialize)]
    struct About {
        tag: &'static str,
    }
    let page = page_json(
        &About { tag: "sea" },
        "r\"1",
        5,
        2,
        2,
        [&b"{\"a\":1}"[..], b"{\"a\":2}"].into_iter(),
    )
    .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&page).unwrap();
    assert_eq!(
        v,
        serde_json::json!({"tag": "sea", "run_id": "r\"1", "total": 5, "offset": 2,
            "limit": 2, "items": [{"a": 1}, {"a": 2}]})
    );
    let empty = page_json(
        &serde_json::json!({}),
        "r",
        0,
        0,
        20,
        std::iter::empty::<&[u8]>(),
    )
    .unwrap();
    assert_eq!(
        empty,
        br#"{"run_id":"r","total":0,"offset":0,"limit":20,"items":[]}"#
    );
}

/// A scored run stores its layout: recorded in the manifest, opened from
/// storage (mapped in place on a local directory, downloaded from S3), the same
/// bytes a reader builds from the run's tables; a run whose layout is gone or
/// cut short is not published.
pub async fn check_stored_layout(storage: &pipeline::store::Storage) {
    use pipeline::runs::{RunError, publish};
    let settings = pipeline::config::Settings::load_with_env(None, Vec::new()).unwrap();
    let manifest = pipeline::score::run_score(storage, &settings, Default::default())
        .await
        .unwrap();
    let stored = manifest.serving.clone().expect("score stores a layout");
    assert_eq!(stored.file, pipeline::serving::LAYOUT_FILE);
    let opened = pipeline::serving::open(storage, &manifest).await.unwrap();
    assert_eq!(opened.run_id(), manifest.run_id);
    assert_eq!(opened.len() as u64, stored.bytes);
    let built = pipeline::serving::build_mapped(storage, &manifest)
        .await
        .unwrap();
    assert!(
        opened.bytes() == built.bytes(),
        "the stored layout is the one its tables give"
    );
    assert!(!opened.section("photos/flexplore").is_empty());
    // The builder makes records on the Rayon pool: the bytes do not depend on
    // its size.
    let with = |threads: usize| {
        let manifest = manifest.clone();
        async move {
            use pipeline::serving::build;
            let tables = build::read_tables(storage, &manifest.run_id).await.unwrap();
            let parts = build::parts(storage, &manifest.run_id, &tables);
            tokio::task::spawn_blocking(move || {
                rayon::ThreadPoolBuilder::new()
                    .num_threads(threads)
                    .build()
                    .unwrap()
                    .install(|| build::build(&manifest, &tables, parts, Vec::new()).unwrap())
            })
            .await
            .unwrap()
        }
    };
    let one = with(1).await;
    assert!(
        one == with(3).await,
        "one thread and three build the same bytes"
    );
    assert!(one[..] == opened.bytes()[..]);

    let path = object_store::path::Path::from(format!("runs/{}/{}", manifest.run_id, stored.file));
    let whole = storage.get_bytes(&path).await.unwrap();
    storage
        .put_bytes(&path, whole.slice(..whole.len() / 2))
        .await
        .unwrap();
    let err = publish(storage, Some(&manifest.run_id)).await.unwrap_err();
    assert!(
        matches!(&err, RunError::Broken { file, .. } if file == &stored.file),
        "{err}"
    );
    assert!(pipeline::serving::open(storage, &manifest).await.is_err());
    storage.delete(&path).await.unwrap();
    let err = publish(storage, Some(&manifest.run_id)).await.unwrap_err();
    assert!(matches!(err, RunError::MissingFile { .. }), "{err}");
    // Put back, it publishes.
    storage.put_bytes(&path, whole).await.unwrap();
    publish(storage, Some(&manifest.run_id)).await.unwrap();
}

/// The layout of the small community scored with the default settings, and
/// its algorithms in display order.
async fn scored_small_community() -> (Layout, Vec<String>) {
    let storage = crate::helpers::small_community().await;
    let settings = pipeline::config::Settings::load_with_env(None, Vec::new()).unwrap();
    let manifest = pipeline::score::run_score(&storage, &settings, Default::default())
        .await
        .unwrap();
    let opened = pipeline::serving::open(&storage, &manifest).await.unwrap();
    let algorithms: Vec<String> =
        serde_json::from_slice(&opened.get("meta", b"algorithms").unwrap()).unwrap();
    (opened, algorithms)
}

/// Photo recs are written from the run's tables' borrowed values, not through
/// the service's own type: each stored item is byte for byte what that type
/// serialises, for every algorithm's lists, on a community whose recs carry
/// titles, top neighbors, similar photos and first-recommended times.
#[tokio::test]
async fn photo_recs_in_the_layout_are_what_the_service_type_serialises() {
    let (opened, algorithms) = scored_small_community().await;
    let (mut checked, mut seen) = (0, [0; 4]);
    for algorithm in &algorithms {
        let name = format!("photos/{algorithm}");
        for key in opened.section(&name).keys() {
            let list = opened.list(&name, key).unwrap().unwrap();
            let items: Vec<pipeline::serving::PhotoItem> = list.decode(0..list.len()).unwrap();
            for (i, item) in items.iter().enumerate() {
                let stored = std::str::from_utf8(list.item(i)).unwrap();
                // serde_json's own parse of a float can be off by its last
                // bit: the score is read back exactly, by std's parse.
                let mut item = item.clone();
                let (_, score) = stored.split_once("\"score\":").unwrap();
                item.score = score.split(',').next().unwrap().parse().unwrap();
                assert_eq!(stored, serde_json::to_string(&item).unwrap());
                checked += 1;
                for (n, shown) in seen.iter_mut().zip([
                    item.title.is_some(),
                    !item.top_neighbors.is_empty(),
                    !item.similar_to.is_empty(),
                    item.first_recommended_at.is_some(),
                ]) {
                    *n += usize::from(shown);
                }
            }
        }
    }
    assert!(checked > 1000, "only {checked} photo recs checked");
    assert!(
        seen.iter().all(|&n| n > 0),
        "title, top neighbors, similar to, first recommended: {seen:?}"
    );
}

/// A default page's items are stored once, in the page: each of the first
/// items is read from the page's own bytes, the others follow it, and the
/// record holds nothing else. The page is the answer its items make.
#[tokio::test]
async fn the_items_on_a_default_page_are_stored_once() {
    let (opened, algorithms) = scored_small_community().await;
    let limit = pipeline::serving::DEFAULT_LIMIT;
    let (mut pages, mut longer) = (0, 0);
    for name in [format!("photos/{}", algorithms[0]), "photographers".into()] {
        for key in opened.section(&name).keys() {
            let list = opened.list(&name, key).unwrap().unwrap();
            let page = list.default_page();
            assert!(!page.is_empty(), "{name} {key:?} has a default page");
            let within = |item: &[u8]| {
                let (p, i) = (page.as_ptr() as usize, item.as_ptr() as usize);
                i >= p && i + item.len() <= p + page.len()
            };
            let shown = list.len().min(limit);
            let rest: usize = (shown..list.len()).map(|i| list.item(i).len()).sum();
            for i in 0..list.len() {
                assert_eq!(within(list.item(i)), i < shown, "{name} item {i}");
            }
            let record = opened.get(&name, key).unwrap();
            assert_eq!(record.len(), 8 + 8 * list.len() + page.len() + rest);
            let answer: serde_json::Value = serde_json::from_slice(&page).unwrap();
            let items: Vec<serde_json::Value> = list.decode(0..shown).unwrap();
            assert_eq!(answer["items"], serde_json::Value::Array(items));
            assert_eq!(answer["total"], list.len());
            pages += 1;
            longer += usize::from(list.len() > limit);
        }
    }
    assert!(pages > 40 && longer > 20, "{pages} pages, {longer} longer");
    // The other algorithms' lists have no page: every item follows the head.
    for algorithm in &algorithms[1..] {
        let name = format!("photos/{algorithm}");
        for key in opened.section(&name).keys() {
            let list = opened.list(&name, key).unwrap().unwrap();
            let items: usize = (0..list.len()).map(|i| list.item(i).len()).sum();
            assert!(list.default_page().is_empty());
            assert_eq!(
                opened.get(&name, key).unwrap().len(),
                8 + 8 * list.len() + items
            );
        }
    }
}

/// A layout stored by the release before format 2 (`n + 1` item offsets,
/// every item after the default page) still reads, so a server keeps
/// answering the run published before an upgrade; a format from a later
/// release is refused, naming it.
#[test]
fn a_format_1_layout_still_reads_and_a_later_format_is_refused() {
    let items: [&[u8]; 2] = [br#"{"x":1}"#, br#"{"x":22}"#];
    let page = br#"{"items":[{"x":1}]}"#;
    let mut record = Vec::new();
    for v in [2, page.len() as u32, 0, 7, 15] {
        record.extend_from_slice(&u32::to_le_bytes(v));
    }
    record.extend_from_slice(page);
    record.extend_from_slice(&items.concat());
    let mut w = LayoutWriter::new(Vec::new());
    w.begin("a").unwrap();
    w.add(b"k", &record).unwrap();
    let file = w.finish("run-1").unwrap();
    let as_format = |format: &str| {
        let text = String::from_utf8_lossy(&file).replace("\"format\":2", format);
        assert_eq!(text.len(), file.len());
        Layout::open(Bytes::from(
            file.iter()
                .zip(text.bytes())
                .map(|(&b, t)| if b.is_ascii() { t } else { b })
                .collect::<Vec<u8>>(),
        ))
    };
    let old = as_format("\"format\":1").unwrap();
    let list = old.list("a", b"k").unwrap().unwrap();
    assert_eq!(list.len(), 2);
    assert_eq!([list.item(0), list.item(1)], items);
    assert_eq!(list.default_page(), &page[..]);
    // The same bytes read as format 2 are a different (malformed) record.
    let err = as_format("\"format\":3").unwrap_err().to_string();
    assert!(err.contains("format 3"), "{err}");
}

/// Whether two layouts hold the same records: the same keys in every
/// section, each with the same bytes (in whatever order the files hold them).
pub fn assert_same_records(a: &Layout, b: &Layout, algorithms: &[String]) {
    use pipeline::serving::section;
    let mut names: Vec<String> = [
        section::META,
        section::USERS,
        section::PHOTOGRAPHERS,
        section::SIMILAR,
        section::TAGS,
        section::PHOTO_INFO,
        section::TRACKED,
        section::USERNAMES,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    names.extend(algorithms.iter().map(|a| section::photos(a)));
    let mut records = 0;
    for name in &names {
        let keys: Vec<&[u8]> = a.section(name).keys().collect();
        let other: Vec<&[u8]> = b.section(name).keys().collect();
        assert!(keys == other, "section {name}: the keys differ");
        for k in keys {
            assert!(
                a.get(name, k) == b.get(name, k),
                "section {name}, key {}: the records differ",
                String::from_utf8_lossy(k)
            );
            records += 1;
        }
    }
    assert!(records > 100, "only {records} records compared");
}
