use std::os::unix::fs::PermissionsExt;

use super::*;

fn store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("gureum.db")).unwrap();
    (dir, store)
}

fn run(store: &mut Store, action: IamAction) -> Result<IamResponse, Error> {
    execute(store, &action)
}

fn create_user(store: &mut Store, name: &str) -> User {
    match run(
        store,
        IamAction::CreateUser {
            name: name.into(),
            path: None,
        },
    )
    .unwrap()
    {
        IamResponse::Users(mut users) => users.remove(0),
        other => panic!("{other:?}"),
    }
}

fn new_key(store: &mut Store, owner: Owner) -> Result<(AccessKey, String), Error> {
    match run(store, IamAction::CreateAccessKey { owner })? {
        IamResponse::NewAccessKey { key, secret } => Ok((key, secret)),
        other => panic!("{other:?}"),
    }
}

#[test]
fn the_account_is_made_once_with_the_store() {
    let (dir, mut store) = store();
    let first = store.read(tables::account_id).unwrap();
    assert_eq!(first.len(), 12);
    assert!(!first.starts_with('0'));
    drop(store);
    let mut again = Store::open(&dir.path().join("gureum.db")).unwrap();
    assert_eq!(again.read(tables::account_id).unwrap(), first);
}

#[test]
fn users_are_made_listed_and_unique_whatever_their_case() {
    let (_dir, mut store) = store();
    let bob = create_user(&mut store, "bob");
    let account = store.read(tables::account_id).unwrap();
    assert_eq!(bob.arn, format!("arn:aws:iam::{account}:user/bob"));
    assert!(bob.id.starts_with("AIDA") && bob.id.len() == 21);
    let err = run(
        &mut store,
        IamAction::CreateUser {
            name: "BOB".into(),
            path: None,
        },
    )
    .unwrap_err();
    assert_eq!(err.code(), "EntityAlreadyExists");
    let dev = run(
        &mut store,
        IamAction::CreateUser {
            name: "ann".into(),
            path: Some("/dev/".into()),
        },
    )
    .unwrap();
    assert!(matches!(&dev, IamResponse::Users(u) if u[0].arn.ends_with(":user/dev/ann")));
    let all = run(&mut store, IamAction::ListUsers { path_prefix: None }).unwrap();
    assert!(matches!(&all, IamResponse::Users(u) if u.len() == 2));
    let devs = run(
        &mut store,
        IamAction::ListUsers {
            path_prefix: Some("/dev/".into()),
        },
    )
    .unwrap();
    assert!(matches!(&devs, IamResponse::Users(u) if u.len() == 1 && u[0].name == "ann"));
    let got = run(&mut store, IamAction::GetUser { name: "Bob".into() }).unwrap();
    assert_eq!(got, IamResponse::Users(vec![bob]));
    let err = run(
        &mut store,
        IamAction::CreateUser {
            name: "no spaces".into(),
            path: None,
        },
    )
    .unwrap_err();
    assert_eq!(err.code(), "ValidationError");
}

#[test]
fn keys_belong_to_root_or_a_user_two_at_most_and_their_secrets_stay_private() {
    let (dir, mut store) = store();
    create_user(&mut store, "bob");
    let (root_key, secret) = new_key(&mut store, Owner::Root).unwrap();
    assert!(root_key.id.starts_with("AKIA") && root_key.id.len() == 20);
    assert_eq!(secret.len(), 40);
    assert_eq!(root_key.owner, Owner::Root);
    let (bob_key, _) = new_key(&mut store, Owner::User("BOB".into())).unwrap();
    assert_eq!(bob_key.owner, Owner::User("bob".into()));
    new_key(&mut store, Owner::User("bob".into())).unwrap();
    let err = new_key(&mut store, Owner::User("bob".into())).unwrap_err();
    assert_eq!(err.code(), "LimitExceeded");
    let err = new_key(&mut store, Owner::User("nobody".into())).unwrap_err();
    assert_eq!(err.code(), "NoSuchEntity");
    let stored = store
        .read(|tx| tables::access_key(tx, &root_key.id))
        .unwrap()
        .unwrap();
    assert_eq!(stored, (root_key.clone(), secret));
    let listed =
        |store: &mut Store, owner| match run(store, IamAction::ListAccessKeys { owner }).unwrap() {
            IamResponse::AccessKeys(keys) => keys,
            other => panic!("{other:?}"),
        };
    assert_eq!(listed(&mut store, None).len(), 3);
    assert_eq!(
        listed(&mut store, Some(Owner::Root)),
        vec![root_key.clone()]
    );
    assert_eq!(listed(&mut store, Some(Owner::User("bob".into()))).len(), 2);
    // A key is deleted only as its owner's, when an owner is named.
    let err = run(
        &mut store,
        IamAction::DeleteAccessKey {
            id: root_key.id.clone(),
            owner: Some(Owner::User("bob".into())),
        },
    )
    .unwrap_err();
    assert_eq!(err.code(), "NoSuchEntity");
    run(
        &mut store,
        IamAction::DeleteAccessKey {
            id: bob_key.id.clone(),
            owner: None,
        },
    )
    .unwrap();
    assert_eq!(listed(&mut store, None).len(), 2);
    let deactivate = |store: &mut Store, owner| {
        run(
            store,
            IamAction::UpdateAccessKey {
                id: root_key.id.clone(),
                owner,
                status: KeyStatus::Inactive,
            },
        )
    };
    let err = deactivate(&mut store, Some(Owner::User("bob".into()))).unwrap_err();
    assert_eq!(err.code(), "NoSuchEntity");
    deactivate(&mut store, Some(Owner::Root)).unwrap();
    assert_eq!(
        listed(&mut store, Some(Owner::Root))[0].status,
        KeyStatus::Inactive
    );
    // The store, which holds the secrets, is its owner's alone, in a
    // directory that is too; a store others can read gets no secret.
    let path = dir.path().join("gureum.db");
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&path), 0o600);
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let err = new_key(&mut store, Owner::Root).unwrap_err();
    assert!(matches!(err, Error::Exposed { mode: 0o644, .. }), "{err}");
    assert!(err.to_string().contains("chmod 600"), "{err}");
}

#[test]
fn policies_attach_and_put_and_a_user_with_any_is_not_deleted() {
    let (_dir, mut store) = store();
    create_user(&mut store, "bob");
    let attach = |store: &mut Store, arn: &str| {
        run(
            store,
            IamAction::AttachUserPolicy {
                user: "bob".into(),
                arn: arn.into(),
            },
        )
    };
    attach(&mut store, managed::EC2_READ_ONLY).unwrap();
    attach(&mut store, managed::EC2_READ_ONLY).unwrap();
    let err = attach(&mut store, "arn:aws:iam::aws:policy/PowerUserAccess").unwrap_err();
    assert_eq!(err.code(), "NoSuchEntity");
    let listed = run(
        &mut store,
        IamAction::ListAttachedUserPolicies { user: "bob".into() },
    )
    .unwrap();
    assert_eq!(
        listed,
        IamResponse::AttachedPolicies(vec![Attached {
            name: "AmazonEC2ReadOnlyAccess".into(),
            arn: managed::EC2_READ_ONLY.into()
        }])
    );
    let doc = r#"{"Version":"2012-10-17","Statement":{"Effect":"Deny","Action":"ec2:DeleteVpc","Resource":"*"}}"#;
    let put = |store: &mut Store, document: &str| {
        run(
            store,
            IamAction::PutUserPolicy {
                user: "bob".into(),
                name: "no-delete".into(),
                document: document.into(),
            },
        )
    };
    put(&mut store, doc).unwrap();
    let err = put(&mut store, r#"{"Statement":{"Effect":"Allow"}}"#).unwrap_err();
    assert_eq!(err.code(), "MalformedPolicyDocument");
    assert!(
        err.to_string().contains("statement 1: it has no Action"),
        "{err}"
    );
    let big = format!(
        r#"{{"Statement":{{"Effect":"Allow","Action":[{}],"Resource":"*"}}}}"#,
        vec!["\"ec2:DescribeInstances\""; 100].join(",")
    );
    assert_eq!(put(&mut store, &big).unwrap_err().code(), "LimitExceeded");
    let got = run(
        &mut store,
        IamAction::GetUserPolicy {
            user: "bob".into(),
            name: "NO-DELETE".into(),
        },
    )
    .unwrap();
    assert!(matches!(&got, IamResponse::Policy(p) if p.document == doc && p.name == "no-delete"));
    run(
        &mut store,
        IamAction::CreateAccessKey {
            owner: Owner::User("bob".into()),
        },
    )
    .unwrap();
    let err = run(&mut store, IamAction::DeleteUser { name: "bob".into() }).unwrap_err();
    assert_eq!(err.code(), "DeleteConflict");
    let text = err.to_string();
    assert!(
        text.contains("access keys")
            && text.contains("managed policies")
            && text.contains("inline"),
        "{text}"
    );
    let keys = match run(&mut store, IamAction::ListAccessKeys { owner: None }).unwrap() {
        IamResponse::AccessKeys(k) => k,
        other => panic!("{other:?}"),
    };
    for k in keys {
        run(
            &mut store,
            IamAction::DeleteAccessKey {
                id: k.id,
                owner: None,
            },
        )
        .unwrap();
    }
    run(
        &mut store,
        IamAction::DetachUserPolicy {
            user: "bob".into(),
            arn: managed::EC2_READ_ONLY.into(),
        },
    )
    .unwrap();
    let err = run(
        &mut store,
        IamAction::DetachUserPolicy {
            user: "bob".into(),
            arn: managed::EC2_READ_ONLY.into(),
        },
    )
    .unwrap_err();
    assert_eq!(err.code(), "NoSuchEntity");
    run(
        &mut store,
        IamAction::DeleteUserPolicy {
            user: "bob".into(),
            name: "no-delete".into(),
        },
    )
    .unwrap();
    assert_eq!(
        run(
            &mut store,
            IamAction::ListUserPolicies { user: "bob".into() }
        )
        .unwrap(),
        IamResponse::PolicyNames(vec![])
    );
    run(&mut store, IamAction::DeleteUser { name: "bob".into() }).unwrap();
    let err = run(&mut store, IamAction::GetUser { name: "bob".into() }).unwrap_err();
    assert_eq!(err.code(), "NoSuchEntity");
}

#[test]
fn actions_cross_the_daemon_s_wire() {
    let action = crate::cloud::api::Action::Iam(IamAction::CreateAccessKey {
        owner: Owner::User("bob".into()),
    });
    let wire = serde_json::to_string(&action).unwrap();
    let back: crate::cloud::api::Action = serde_json::from_str(&wire).unwrap();
    assert!(
        matches!(back, crate::cloud::api::Action::Iam(a) if a == IamAction::CreateAccessKey { owner: Owner::User("bob".into()) }),
        "{wire}"
    );
    let response = crate::cloud::api::Response::Iam(IamResponse::Done);
    let wire = serde_json::to_string(&response).unwrap();
    assert!(matches!(
        serde_json::from_str(&wire).unwrap(),
        crate::cloud::api::Response::Iam(IamResponse::Done)
    ));
}
