use super::*;

fn from_toml(text: &str) -> Result<Layered, ConfigError> {
    let dir = std::env::temp_dir().join(format!(
        "switchyard-config-{}-{:?}",
        std::process::id(),
        std::thread::current().id()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("switchyard.toml");
    std::fs::write(&path, text).unwrap();
    let r = Layered::load(Some(&path), &|_| None, None);
    let _ = std::fs::remove_dir_all(&dir);
    r
}

#[test]
fn defaults_validate() {
    let c = RawConfig::default().validate().unwrap();
    assert_eq!(c.listen.port(), 3000);
    assert!(c.worker_count() >= 1);
    assert_eq!(c.strategy, StrategySpec::builtin("round-robin"));
    assert_eq!(c.sniff.server_first_after, None, "silence is waited for");
    assert!(c.max_connections > 0 && !c.max_connections_set);
}

#[test]
fn unknown_keys_name_the_key_the_line_and_a_near_one() {
    let e = from_toml("port = 1\nwrokers = 2\n")
        .unwrap_err()
        .to_string();
    assert!(
        e.ends_with("switchyard.toml:2: unknown key `wrokers` (did you mean `workers`?)"),
        "{e}"
    );
}

#[test]
fn bad_values_name_the_key_and_line() {
    // A value of the wrong type, from the file: key, line and what was expected.
    let e = from_toml("port = 1\nworkers = \"many\"\n")
        .unwrap_err()
        .to_string();
    assert!(
        e.ends_with("switchyard.toml:2: `workers`: expected `auto` or a number, got `many`"),
        "{e}"
    );
    let e = from_toml("health_check = \"ping\"\n")
        .unwrap_err()
        .to_string();
    assert!(
        e.ends_with(
            "switchyard.toml:1: `health_check`: expected `tcp`, `none` or `http:/path`, got `ping`"
        ),
        "{e}"
    );
    let e = from_toml("port = \"eighty\"\n").unwrap_err().to_string();
    assert!(e.contains("switchyard.toml:1: `port`"), "{e}");
    // A value that parses but makes no sense: found when validating, located
    // through the file's lines.
    let l = from_toml("# zero\n\nworkers = 0\n").unwrap();
    let e = l.validate().unwrap_err().to_string();
    assert!(
        e.ends_with("switchyard.toml:3: `workers`: 0 workers and no `backends`: there would be nothing to route to"),
        "{e}"
    );
}

#[test]
fn layers_apply_in_order_and_remember_where_values_came_from() {
    let dir = std::env::temp_dir().join(format!("switchyard-layers-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("s.toml");
    std::fs::write(&path, "port = 4000\nfuel = 1000\nhost = \"127.0.0.2\"\n").unwrap();
    let env = |v: &str| (v == "PORT").then(|| "5000".to_string());
    let cli = RawConfig {
        fuel: 2000,
        retries: 9,
        ..RawConfig::default()
    };
    let given = |k: &str| k == "fuel";
    let flags = Flags {
        values: &cli,
        given: &given,
    };
    let l = Layered::load(Some(&path), &env, Some(flags)).unwrap();
    assert_eq!(l.raw.port, 5000, "the environment over the file");
    assert_eq!(l.raw.fuel, 2000, "a flag over the file");
    assert_eq!(
        l.raw.retries,
        RawConfig::default().retries,
        "not given: not taken"
    );
    assert_eq!(l.raw.host, "127.0.0.2");
    assert_eq!(l.origin("port"), layers::Origin::Env("PORT"));
    assert_eq!(l.origin("fuel"), layers::Origin::Flag);
    assert_eq!(l.origin("host"), layers::Origin::File(3));
    assert_eq!(l.origin("retries"), layers::Origin::Default);
    let e = Layered::load(Some(&path), &|v| (v == "PORT").then(|| "x".into()), None)
        .unwrap_err()
        .to_string();
    assert_eq!(e, "$PORT: `port`: not a port number: `x`");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_old_inspection_key_still_means_server_first() {
    let l = from_toml("inspection_timeout_ms = 25\n").unwrap();
    assert_eq!(l.raw.server_first_after_ms, 25);
    assert_eq!(
        l.validate().unwrap().sniff.server_first_after,
        Some(Duration::from_millis(25))
    );
}

#[test]
fn every_option_has_a_flag_except_those_that_cannot() {
    let options = RawConfig::options();
    let keys: Vec<String> = toml::Table::try_from(RawConfig::default())
        .unwrap()
        .keys()
        .cloned()
        .chain(["backends_file".to_string()])
        .collect();
    for k in &keys {
        let (_, flag) = options
            .iter()
            .find(|(id, _)| id == k)
            .unwrap_or_else(|| panic!("{k} is not an option"));
        if k == "worker_env" {
            assert!(flag.is_none(), "a map has no flag");
        } else {
            assert!(flag.is_some(), "{k} has no flag");
        }
    }
    // Flags are spelled as their keys.
    for (k, flag) in &options {
        match (k.as_str(), flag.as_deref()) {
            ("backends", Some(f)) => assert_eq!(f, "--backend"),
            ("respawn", Some(f)) => assert_eq!(f, "--no-respawn"),
            ("worker_command", Some(f)) => assert_eq!(f, "-- COMMAND"),
            (k, Some(f)) => assert_eq!(f, format!("--{}", k.replace('_', "-"))),
            (k, None) => assert_eq!(k, "worker_env"),
        }
    }
}

#[test]
fn enum_names_agree_between_flags_and_files() {
    use clap::ValueEnum;
    for v in OpaquePolicy::value_variants() {
        let name = v.to_possible_value().unwrap().get_name().to_string();
        let parsed: OpaquePolicy = toml::Value::String(name.clone()).try_into().unwrap();
        assert_eq!(&parsed, v, "{name}");
    }
    for v in Forward::value_variants() {
        let name = v.to_possible_value().unwrap().get_name().to_string();
        let parsed: Forward = toml::Value::String(name.clone()).try_into().unwrap();
        assert_eq!(&parsed, v, "{name}");
    }
}
