package federation

import (
	"net/http"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// FuzzParseSignatureInput feeds arbitrary header values to the
// Signature-Input, Signature and Content-Digest parsers and, for what
// parses, to the signature base and the whole Verify: nothing may panic,
// and nothing but the seeds' real signature may verify.
func FuzzParseSignatureInput(f *testing.F) {
	key, _ := GenerateKey()
	req, _ := NewSignedRequest(bg(), "PUT", "https://b.test/v1/x", []byte("{}"), "a.test", "b.test", key, time.Unix(1_700_000_000, 0))
	f.Add(req.Header.Get(HeaderSignatureInput), req.Header.Get(HeaderSignature))
	f.Add(`sig-b26=("date" "@method" "@path" "@authority" "content-type" "content-length");created=1618884473;keyid="test-key-ed25519"`, `sig-b26=:wqcAqbmYJ2ji2glfAMaRy4gruYYnx2nEFN2HN6jrnDnQCK1u02Gb04v9EDgwUPiu4A0w6vuQv5lIp5WPpBKRCw==:`)
	f.Add(`sig1=("@method";req "x" "@query-param";name="a");created=-1;expires=1.5;nonce=?1`, `sig1=("a")`)
	f.Add(`sig1=(), sig2=("@path");created=99999999999999999999`, `sig1=:=:, sig2=?0`)
	f.Add(`sig1=("@method" "@method");created=1;keyid=""`, `sig1=:AAAA:;x`)
	f.Add(`a=b;c=d, e`, `sig1=@1659578233`)
	f.Add(`sig1=("\x00")`, "")
	f.Add("", "")

	keys := StaticKeys{"a.test": {key.ID: key.Public}}
	f.Fuzz(func(t *testing.T, input, signature string) {
		if in, err := parseSignatureInput([]string{input}); err == nil {
			r, _ := http.NewRequest("PUT", "https://b.test/v1/x", nil)
			r.Header = req.Header.Clone()
			_, _ = signatureBase(r, in.components, in.list, RequestTargetURI)
			_, _ = parseSignature([]string{signature}, in.label)
		}
		_ = checkDigest([]string{input}, nil)

		r, _ := http.NewRequest("PUT", "https://b.test/v1/x", nil)
		r.Header = req.Header.Clone()
		r.Header.Set(HeaderSignatureInput, input)
		r.Header.Set(HeaderSignature, signature)
		v := NewVerifier(VerifierOptions{})
		_, err := v.Verify(bg(), r, []byte("{}"), "b.test", keys, time.Unix(1_700_000_000, 0))
		if err == nil && (input != req.Header.Get(HeaderSignatureInput) || signature != req.Header.Get(HeaderSignature)) {
			// Only re-serializations of the real signature may pass.
			in, _ := parseSignatureInput([]string{input})
			orig, _ := parseSignatureInput(req.Header.Values(HeaderSignatureInput))
			if in == nil || orig == nil || in.nonce != orig.nonce || in.keyID != orig.keyID {
				t.Fatalf("forged headers verified:\n%s\n%s", input, signature)
			}
		}
	})
}

// FuzzSRVAnswer feeds arbitrary bytes, unpacked as a DNS message, to the
// SRV and address answer parsers and the response check: none may panic,
// and whatever SRV records they accept are usable targets.
func FuzzSRVAnswer(f *testing.F) {
	const qname = "_parley._tcp.a.test."
	q := new(dns.Msg)
	q.SetQuestion(qname, dns.TypeSRV)
	seed := func(rrs []string, ns []string, rcode int) {
		m := new(dns.Msg)
		m.SetReply(q)
		m.Rcode = rcode
		for _, s := range rrs {
			rr, err := dns.NewRR(s)
			if err != nil {
				f.Fatal(err)
			}
			m.Answer = append(m.Answer, rr)
		}
		for _, s := range ns {
			rr, _ := dns.NewRR(s)
			m.Ns = append(m.Ns, rr)
		}
		b, err := m.Pack()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	seed([]string{qname + " 300 IN SRV 10 5 8448 h.a.test.", qname + " 300 IN SRV 20 0 9000 i.a.test."}, nil, dns.RcodeSuccess)
	seed([]string{qname + " 300 IN CNAME _parley._tcp.b.test.", "_parley._tcp.b.test. 60 IN SRV 1 1 1 h.b.test."}, nil, dns.RcodeSuccess)
	seed([]string{qname + " 300 IN SRV 0 0 0 ."}, nil, dns.RcodeSuccess)
	seed(nil, []string{"test. 300 IN SOA ns.test. admin.test. 1 2 3 4 5"}, dns.RcodeNameError)
	seed([]string{"a.test. 300 IN A 192.0.2.1", "a.test. 300 IN AAAA 2001:db8::1"}, nil, dns.RcodeSuccess)
	seed(nil, nil, dns.RcodeServerFailure)
	f.Add([]byte{})
	f.Add([]byte{0, 0, 0x81, 0x80, 0, 1, 0, 1, 0, 0, 0, 0})

	f.Fuzz(func(t *testing.T, data []byte) {
		m := new(dns.Msg)
		if err := m.Unpack(data); err != nil {
			return
		}
		_ = checkResponse(q, m)
		ans, err := parseSRVResponse(qname, m)
		if err == nil {
			for _, rec := range ans.records {
				if rec.Target == "" {
					if len(ans.records) != 1 {
						t.Fatalf("\".\" target among %d records", len(ans.records))
					}
					continue
				}
				if _, err := normalizeHostname(rec.Target); err != nil || rec.Port == 0 {
					t.Fatalf("accepted unusable target %+v", rec)
				}
			}
		}
		_, _ = parseAddrResponse("a.test.", dns.TypeA, m)
		_, _ = parseAddrResponse("a.test.", dns.TypeAAAA, m)
		_ = negativeTTL(m)
	})
}
