use super::*;

fn ini(text: &str, style: Style, edit: impl FnOnce(&mut IniFile)) -> String {
    let mut f = IniFile::new(text, style);
    edit(&mut f);
    f.text()
}

#[test]
fn ini_reads_configparser_lines_of_its_section_only() {
    let text = "top=1\n[vars]\na=1\n b = 2 \n# c=3\n; d=4\ne: 5\nnot an assignment\n[varsx]\nf=6\n[vars\ng=7\n[vars]\nh=8\n";
    let pairs: Vec<(String, String)> = ini_values(text, "vars");
    let keys: Vec<(&str, &str)> = pairs
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    assert_eq!(keys, [("a", "1"), ("b", "2"), ("e", "5"), ("h", "8")]);
}

#[test]
fn ini_set_rewrites_every_copy_in_place() {
    let text = "# head\n[vars]\nk = old\nother=x\n\n[more]\nk=not mine\n[vars]\nk=older\n";
    assert_eq!(
        ini(text, Style::Tight, |f| f.set("vars", "k", "new")),
        "# head\n[vars]\nk=new\nother=x\n\n[more]\nk=not mine\n[vars]\nk=new\n"
    );
    // The reader sees the new value, whichever copy it takes.
    let written = ini(text, Style::Spaced, |f| f.set("vars", "k", "new"));
    assert_eq!(
        ini_values(&written, "vars").last(),
        Some(&("k".to_string(), "new".to_string()))
    );
}

#[test]
fn ini_set_adds_a_missing_key_at_the_end_of_the_first_section() {
    let text = "[vars]\na=1\n\n[other]\nb=2\n\n[vars]\nc=3\n";
    assert_eq!(
        ini(text, Style::Spaced, |f| f.set("vars", "k", "v")),
        "[vars]\na=1\nk = v\n\n[other]\nb=2\n\n[vars]\nc=3\n"
    );
    assert_eq!(
        ini("[vars]\n\n[x]\n", Style::Tight, |f| f.set("vars", "k", "v")),
        "[vars]\nk=v\n\n[x]\n",
        "an empty section gets it right after its header"
    );
}

#[test]
fn ini_set_creates_a_missing_section() {
    assert_eq!(
        ini("", Style::Tight, |f| f.set("vars", "k", "v")),
        "[vars]\nk=v\n"
    );
    assert_eq!(
        ini("[a]\nx=1\n", Style::Spaced, |f| f.set("b", "k", "v")),
        "[a]\nx=1\n\n[b]\nk = v\n",
        "after the other sections"
    );
    // Lines before any header are unreadable for ConfigParser: the header goes first, and
    // an assignment already there is rewritten, not written twice.
    assert_eq!(
        ini("# c\nk=old\nx=1\n", Style::Tight, |f| f
            .set("vars", "k", "v")),
        "[vars]\n# c\nk=v\nx=1\n"
    );
}

#[test]
fn ini_remove_only_in_its_section() {
    let text = "[vars]\nfp=1\na=2\n[other]\nfp=3\n[vars]\nfp = 4\n";
    assert_eq!(
        ini(text, Style::Tight, |f| f.remove("vars", "fp")),
        "[vars]\na=2\n[other]\nfp=3\n[vars]\n"
    );
}

#[test]
fn ini_untouched_text_is_kept() {
    let text = "# mine\n[vars]\nssl = false\n\n[irs]\nx = 1";
    assert_eq!(
        ini(text, Style::Spaced, |f| f.set("vars", "ssl", "false")),
        "# mine\n[vars]\nssl = false\n\n[irs]\nx = 1\n"
    );
    assert_eq!(ini("", Style::Spaced, |_| {}), "", "empty stays empty");
}

#[test]
fn shell_values_and_quoting() {
    assert_eq!(
        shell_values(
            "export A=1\n# c\nB='x y'\nnot a var\n C=\"q\"\nD=\"a \\\"b\\\" \\$c\"\n-E=1\n"
        ),
        [("A", "1"), ("B", "x y"), ("C", "q"), ("D", "a \"b\" $c")]
            .map(|(k, v)| (k.to_string(), v.to_string()))
    );
    let hard = "a \"b\" $c `d` \\e";
    assert_eq!(shell_quote(hard), "\"a \\\"b\\\" \\$c \\`d\\` \\\\e\"");
    let mut f = ShellFile::new("");
    f.set("X", hard);
    assert_eq!(
        shell_values(&f.text()),
        [("X".to_string(), hard.to_string())]
    );
}

#[test]
fn shell_set_rewrites_every_assignment_or_appends() {
    let mut f = ShellFile::new("# c\nA=1\nexport A='2'\nB=3");
    f.set("A", "x");
    f.set("C", "y");
    assert_eq!(f.text(), "# c\nA=\"x\"\nA=\"x\"\nB=3\nC=\"y\"\n");
}
