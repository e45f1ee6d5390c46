//! Pinned cache keys: the same step gives the same key on every machine, in every directory and
//! for every kiln build of the same key format, so a cache one runner exports is hit by another.
//! A change to what a key covers or how it is written must change `KEY_VERSION` and these pins.

use super::cache::{KeyBuilder, base_key};
use super::run::run_key;
use super::stage::{copy_key, key_on};
use crate::dockerfile::parse;
use crate::exec::RunSpec;
use crate::layer::Compression;
use crate::plan::{ExecOp, Op, Plan, PlanOptions, Scope};

const DOCKERFILE: &str = "\
FROM scratch
RUN --mount=type=cache,target=/root/.cache,id=pip --network=none echo \"$HOME\" && make
COPY --chown=1:2 --chmod=644 --exclude=*.md a b /dest/
ADD --checksum=sha256:0000000000000000000000000000000000000000000000000000000000000000 https://example.com/x.tgz /x
";

/// The keys of the three filesystem steps of [`DOCKERFILE`], lowered, on a fixed parent, and
/// the text the COPY's key hashes.
fn keys() -> ([String; 4], String) {
    let file = parse(DOCKERFILE).unwrap();
    let plan = Plan::new(&file, PlanOptions::default()).unwrap();
    let scope = Scope::new(vec![("PATH".into(), "/usr/bin:/bin".into())]);
    let steps = plan.lower_stage(0, &[], scope.clone()).unwrap();
    let parent = base_key("image sha256:5d41402abc4b2a76b9719d911017c592");
    let on = || -> KeyBuilder { key_on(&parent, Some(1_700_000_000), Compression::None) };
    let Op::Exec(run) = &steps[0].op else {
        panic!("{:?}", steps[0])
    };
    let shell = ["/bin/sh".to_owned(), "-c".to_owned()];
    let bare = ExecOp {
        mounts: Vec::new(),
        ..run.clone()
    };
    let spec = RunSpec::for_run(&bare, &scope, &shell, "/src", "1000", Vec::new()).unwrap();
    let declared = [("V".to_owned(), Some("1".to_owned()))];
    let run = run_key(on(), run, &spec, &declared, &shell).finish();
    let (Op::Copy(copy), Op::Copy(add)) = (&steps[1].op, &steps[2].op) else {
        panic!("{:?}", &steps[1..])
    };
    let copy = copy_key(on(), copy, "/src");
    let text = copy.text();
    let copy = copy.finish();
    let add = copy_key(on(), add, "/").finish();
    ([parent, run, copy, add].map(|d| d.to_string()), text)
}

#[test]
fn keys_are_pinned() {
    let (keys, copy_text) = keys();
    assert_eq!(
        keys,
        [
            "sha256:ae1cb1dfe0516b57e802d933223479ada5dc622d73f4eced0dccd9bb06af5b91",
            "sha256:0f258e3b874b35d414cc96f627fddd72579d906ff27b3b1f877702c2ab8bcd2d",
            "sha256:bc0782237397438786bd75104959fe82307da9da922d3d9c81b1d6e90d989ebb",
            "sha256:003c8c49d223113102172a075e3c5294ae17964b39a70d0d1272d85139cc2361",
        ]
    );
    // What a key hashes: named inputs in order, each canonical JSON (object keys sorted).
    assert_eq!(
        copy_text,
        concat!(
            r#"[["version","kiln build cache 2"],"#,
            r#"["parent","sha256:ae1cb1dfe0516b57e802d933223479ada5dc622d73f4eced0dccd9bb06af5b91"],"#,
            r#"["source_date_epoch",1700000000],"#,
            r#"["compression","application/vnd.oci.image.layer.v1.tar"],"#,
            r#"["copy",{"checksum":null,"#,
            r#""files":{"dest":"/dest/","inline":[],"json":false,"sources":["a","b"]},"#,
            r#""flags":{"chmod":"644","chown":"1:2","excludes":["*.md"],"link":false},"#,
            r#""keep_git_dir":false,"keyword":"copy","parents":false,"unpack":"never"}],"#,
            r#"["workdir","/src"]]"#
        )
    );
}
