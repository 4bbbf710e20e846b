//! Wire layouts of the generated protocol structs: exact bytes where the XDR rules are
//! easy to get wrong (char arrays, widened small integers, optional data, unions), and
//! round trips through encode/decode.

use qvisor_rpc::remote::{
    ConnectListAllDomainsRet, ConnectOpenArgs, DomainGetInfoRet, DomainGetMessagesRet,
    DomainGetPerfEventsRet, DomainStatsRecord, NodeGetInfoRet, NonnullDomain, TypedParam,
    TypedParamValue, DOMAIN_MESSAGES_MAX,
};
use qvisor_rpc::xdr::{c_char_array, from_bytes, to_bytes, XdrError};
use qvisor_rpc::{ErrorCode, ErrorDomain, RemoteError};

fn dom(name: &str, id: i32) -> NonnullDomain {
    NonnullDomain {
        name: name.into(),
        uuid: [id as u8; 16],
        id,
    }
}

#[test]
fn node_info_model_is_32_four_byte_chars() {
    let ret = NodeGetInfoRet {
        model: c_char_array("x86_64"),
        memory: 1,
        cpus: 2,
        mhz: 3,
        nodes: 4,
        sockets: 5,
        cores: 6,
        threads: 7,
    };
    let b = to_bytes(&ret).unwrap();
    assert_eq!(b.len(), 32 * 4 + 8 + 6 * 4);
    assert_eq!(&b[..8], &[0, 0, 0, b'x', 0, 0, 0, b'8']);
    assert_eq!(from_bytes::<NodeGetInfoRet>(&b).unwrap(), ret);
}

#[test]
fn domain_info_widens_char_and_short_to_words() {
    let ret = DomainGetInfoRet {
        state: 1,
        max_mem: 2,
        memory: 3,
        nr_virt_cpu: 4,
        cpu_time: 5,
    };
    let b = to_bytes(&ret).unwrap();
    assert_eq!(
        b,
        [
            0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 3, 0, 0, 0, 4, 0, 0, 0, 0, 0,
            0, 0, 5
        ]
    );
    assert_eq!(from_bytes::<DomainGetInfoRet>(&b).unwrap(), ret);
}

#[test]
fn connect_open_without_name_is_a_null_pointer() {
    let b = to_bytes(&ConnectOpenArgs {
        name: None,
        flags: 7,
    })
    .unwrap();
    assert_eq!(b, [0, 0, 0, 0, 0, 0, 0, 7]);
    let with = ConnectOpenArgs {
        name: Some("qemu:///system".into()),
        flags: 0,
    };
    assert_eq!(
        from_bytes::<ConnectOpenArgs>(&to_bytes(&with).unwrap()).unwrap(),
        with
    );
}

#[test]
fn domain_lists_round_trip() {
    let ret = ConnectListAllDomainsRet {
        domains: vec![dom("a", 1), dom("bb", -1)],
        ret: 2,
    };
    let b = to_bytes(&ret).unwrap();
    // count + (len "a" + pad + uuid + id) + (len "bb" + pad + uuid + id) + ret
    assert_eq!(b.len(), 4 + (4 + 4 + 16 + 4) * 2 + 4);
    assert_eq!(from_bytes::<ConnectListAllDomainsRet>(&b).unwrap(), ret);
}

#[test]
fn typed_parameters_round_trip_every_arm() {
    let params = vec![
        TypedParam {
            field: "i".into(),
            value: TypedParamValue::Int(-1),
        },
        TypedParam {
            field: "ui".into(),
            value: TypedParamValue::Uint(1),
        },
        TypedParam {
            field: "l".into(),
            value: TypedParamValue::Llong(-2),
        },
        TypedParam {
            field: "ul".into(),
            value: TypedParamValue::Ullong(2),
        },
        TypedParam {
            field: "d".into(),
            value: TypedParamValue::Double(0.5),
        },
        TypedParam {
            field: "b".into(),
            value: TypedParamValue::Boolean(1),
        },
        TypedParam {
            field: "s".into(),
            value: TypedParamValue::String("text".into()),
        },
    ];
    let rec = DomainStatsRecord {
        dom: dom("vm", 3),
        params: params.clone(),
    };
    assert_eq!(
        from_bytes::<DomainStatsRecord>(&to_bytes(&rec).unwrap()).unwrap(),
        rec
    );
    let one = to_bytes(&params[4]).unwrap();
    // field "d" (4 + 4), discriminant 5, IEEE double 0.5
    assert_eq!(&one[8..], &[0, 0, 0, 5, 0x3f, 0xe0, 0, 0, 0, 0, 0, 0]);
}

#[test]
fn typed_parameter_with_unknown_type_is_rejected() {
    let mut b = to_bytes(&TypedParam {
        field: "x".into(),
        value: TypedParamValue::Int(1),
    })
    .unwrap();
    b[11] = 9;
    assert_eq!(
        from_bytes::<TypedParam>(&b),
        Err(XdrError::UnknownDiscriminant {
            union: "remote_typed_param_value",
            value: 9
        })
    );
}

#[test]
fn list_bounds_from_the_protocol_file_are_enforced() {
    let too_many = DomainGetMessagesRet {
        msgs: vec![String::new(); DOMAIN_MESSAGES_MAX as usize + 1],
    };
    assert!(matches!(
        to_bytes(&too_many),
        Err(XdrError::TooLong { what: "array", .. })
    ));
    // REMOTE_DOMAIN_PERF_EVENTS_MAX is 64: a count of 65 is refused before decoding.
    let mut b = 65u32.to_be_bytes().to_vec();
    b.extend(std::iter::repeat_n(0u8, 65 * 12));
    assert!(matches!(
        from_bytes::<DomainGetPerfEventsRet>(&b),
        Err(XdrError::TooLong { max: 64, .. })
    ));
}

#[test]
fn remote_error_has_libvirts_layout() {
    let e = RemoteError::new(ErrorCode::NoDomain, ErrorDomain::Qemu, "x");
    let b = to_bytes(&e).unwrap();
    let mut expect = vec![0, 0, 0, 42, 0, 0, 0, 10];
    // message: present, "Domain not found: x"
    expect.extend([0, 0, 0, 1, 0, 0, 0, 19]);
    expect.extend(b"Domain not found: x\0");
    // level 2, dom NULL
    expect.extend([0, 0, 0, 2, 0, 0, 0, 0]);
    // str1: the format, str2: the detail, str3 NULL
    expect.extend([0, 0, 0, 1, 0, 0, 0, 20]);
    expect.extend(b"Domain not found: %s");
    expect.extend([0, 0, 0, 1, 0, 0, 0, 1, b'x', 0, 0, 0]);
    expect.extend([0, 0, 0, 0]);
    // int1 -1, int2 -1, net NULL
    expect.extend([0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0]);
    assert_eq!(b, expect);
}
