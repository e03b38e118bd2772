//! Sequential specifications. Each model compiles operations into a compact input (values
//! interned to `u32`) and steps a small hashable state; the search never sees `Value`s.

use crate::history::{Op, OpStatus};
use crate::value::Value;
use std::collections::HashMap;
use std::fmt;
use std::hash::Hash;

/// The models `keel check --model` offers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Model {
    /// read / write, initially nil (or `initial`).
    Register,
    /// read / write / cas `[expected new]`, initially nil (or `initial`).
    CasRegister,
    /// Per key a string, initially empty: get / put / append / delete / cas. Split per key.
    Kv,
    /// acquire (legal when free) / release (legal when held).
    Mutex,
    /// `txn` of `[:read k v]` / `[:write k v]` micro-operations over several registers.
    MultiRegister,
}

impl Model {
    pub const ALL: [Model; 5] = [
        Model::Register,
        Model::CasRegister,
        Model::Kv,
        Model::Mutex,
        Model::MultiRegister,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Model::Register => "register",
            Model::CasRegister => "cas-register",
            Model::Kv => "kv",
            Model::Mutex => "mutex",
            Model::MultiRegister => "multi-register",
        }
    }

    pub fn parse(name: &str) -> Option<Model> {
        Model::ALL.into_iter().find(|m| m.name() == name)
    }
}

impl fmt::Display for Model {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A sequential specification the search can step. `step` is `&mut self` so a model may grow
/// its value interner (appends create new strings).
pub(crate) trait SeqModel {
    type State: Clone + Eq + Hash + fmt::Debug;
    type Input;
    fn init(&self) -> Self::State;
    /// The state after applying `input` in `state`, or `None` when the operation (with the
    /// result it returned) is illegal there.
    fn step(&mut self, state: &Self::State, input: &Self::Input) -> Option<Self::State>;
    fn show(&self, state: &Self::State) -> String;
    /// True when `input`, applied where it is legal and leaving `state` unchanged, can be
    /// moved to the front of any linearization from here: it is a pure observation (a
    /// read), or a blind write of a value no operation ever requires, done in a state that
    /// already holds such a value. The search then takes it greedily (see search.rs).
    fn commutes_to_front(&self, input: &Self::Input) -> bool;
    /// For models where every operation either requires one specific value or blindly sets
    /// one: the value an `info` operation would set (so the search may delay it until an
    /// operation requiring that value is pending), else `None`.
    fn produces(&self, _input: &Self::Input) -> Option<u64> {
        None
    }
    /// The value an operation requires to be legal (a read's result, a cas's expected value).
    fn requires(&self, _input: &Self::Input) -> Option<u64> {
        None
    }
    /// Approximate heap bytes a state owns, for the memory budget.
    fn state_heap_bytes(&self, state: &Self::State) -> usize;
}

/// Interns values to dense ids; id 0 is nil.
#[derive(Clone, Debug)]
pub(crate) struct Interner {
    ids: HashMap<Value, u32>,
    values: Vec<Value>,
}

impl Interner {
    pub(crate) fn new() -> Interner {
        let mut ids = HashMap::new();
        ids.insert(Value::Nil, 0);
        Interner {
            ids,
            values: vec![Value::Nil],
        }
    }

    pub(crate) fn id(&mut self, value: &Value) -> u32 {
        if let Some(&id) = self.ids.get(value) {
            return id;
        }
        let id = u32::try_from(self.values.len()).expect("more than 2^32 distinct values");
        self.ids.insert(value.clone(), id);
        self.values.push(value.clone());
        id
    }

    pub(crate) fn value(&self, id: u32) -> &Value {
        &self.values[id as usize]
    }
}

/// Settings that change what a model accepts.
#[derive(Clone, Debug, Default)]
pub(crate) struct Semantics {
    pub initial: Option<Value>,
    pub strict_nil: bool,
}

/// Register input. Reads carry the value read; writes and cas carry interned arguments.
#[derive(Clone, Copy, Debug)]
pub(crate) enum RegInput {
    Read(u32),
    Write(u32),
    Cas(u32, u32),
    Append(u32),
}

/// The interned id standing for every value that no operation reads or expects.
pub(crate) const UNOBSERVED: u32 = u32::MAX;

/// One register (or one kv key): state is the interned current value.
pub(crate) struct RegisterModel {
    pub interner: Interner,
    initial: u32,
    /// kv semantics: values are text, append concatenates.
    text: bool,
    /// Info writes may be delayed until an operation needing their value is pending (set by
    /// `check` for partitions without appends; see `SeqModel::produces`).
    pub lazy_info: bool,
}

impl RegisterModel {
    pub(crate) fn new(model: Model, semantics: &Semantics) -> RegisterModel {
        let text = model == Model::Kv;
        let mut interner = Interner::new();
        let initial = match (&semantics.initial, text) {
            (Some(v), true) => interner.id(&Value::Str(v.to_text())),
            (Some(v), false) => interner.id(v),
            (None, true) => interner.id(&Value::str("")),
            (None, false) => 0,
        };
        RegisterModel {
            interner,
            initial,
            text,
            lazy_info: false,
        }
    }

    fn intern(&mut self, value: &Value) -> u32 {
        if self.text {
            if value.is_nil() {
                return self.interner.id(&Value::str(""));
            }
            self.interner.id(&Value::Str(value.to_text()))
        } else {
            self.interner.id(value)
        }
    }

    /// Compiles an operation; `Ok(None)` when it constrains nothing and changes nothing.
    pub(crate) fn compile(
        &mut self,
        model: Model,
        op: &Op,
        semantics: &Semantics,
    ) -> Result<Option<RegInput>, String> {
        assert!(
            op.status != OpStatus::Fail,
            "failed operations are dropped before compiling"
        );
        let f = op.f.as_str();
        let argument = if op.input.is_nil() {
            &op.output
        } else {
            &op.input
        };
        let kv = model == Model::Kv;
        match f {
            "read" | "get" => {
                if op.status != OpStatus::Ok || (op.output.is_nil() && !semantics.strict_nil) {
                    return Ok(None);
                }
                Ok(Some(RegInput::Read(self.intern(&op.output))))
            }
            "write" | "put" => Ok(Some(RegInput::Write(self.intern(argument)))),
            "cas" if model != Model::Register => {
                let pair = argument
                    .as_list()
                    .filter(|l| l.len() == 2)
                    .ok_or_else(|| format!("cas value must be [expected new], got {argument}"))?;
                Ok(Some(RegInput::Cas(
                    self.intern(&pair[0]),
                    self.intern(&pair[1]),
                )))
            }
            "append" if kv => Ok(Some(RegInput::Append(self.intern(argument)))),
            "delete" if kv => Ok(Some(RegInput::Write(self.intern(&Value::str(""))))),
            _ => Err(format!("model {model} has no operation :{f}")),
        }
    }
}

impl SeqModel for RegisterModel {
    type State = u32;
    type Input = RegInput;

    fn init(&self) -> u32 {
        self.initial
    }

    fn step(&mut self, state: &u32, input: &RegInput) -> Option<u32> {
        match *input {
            RegInput::Read(v) => (v == *state).then_some(*state),
            RegInput::Write(v) => Some(v),
            RegInput::Cas(expected, new) => (expected == *state).then_some(new),
            RegInput::Append(suffix) => {
                let mut text = self.interner.value(*state).to_text();
                text.push_str(&self.interner.value(suffix).to_text());
                Some(self.interner.id(&Value::Str(text)))
            }
        }
    }

    fn produces(&self, input: &RegInput) -> Option<u64> {
        match *input {
            RegInput::Write(v) | RegInput::Cas(_, v) if self.lazy_info => Some(v as u64),
            _ => None,
        }
    }

    fn requires(&self, input: &RegInput) -> Option<u64> {
        match *input {
            RegInput::Read(v) | RegInput::Cas(v, _) if self.lazy_info => Some(v as u64),
            _ => None,
        }
    }

    fn commutes_to_front(&self, input: &RegInput) -> bool {
        match *input {
            RegInput::Read(_) => true,
            RegInput::Cas(expected, new) => expected == new,
            RegInput::Write(v) => v == UNOBSERVED,
            RegInput::Append(_) => false,
        }
    }

    fn show(&self, state: &u32) -> String {
        if *state == UNOBSERVED {
            return "(a value no operation reads)".to_string();
        }
        self.interner.value(*state).to_string()
    }

    fn state_heap_bytes(&self, _state: &u32) -> usize {
        0
    }
}

#[derive(Clone, Copy, Debug)]
pub(crate) enum MutexInput {
    Acquire,
    Release,
}

pub(crate) struct MutexModel;

impl MutexModel {
    pub(crate) fn compile(op: &Op) -> Result<Option<MutexInput>, String> {
        match op.f.as_str() {
            "acquire" | "lock" => Ok(Some(MutexInput::Acquire)),
            "release" | "unlock" => Ok(Some(MutexInput::Release)),
            f => Err(format!("model mutex has no operation :{f}")),
        }
    }
}

impl SeqModel for MutexModel {
    type State = bool;
    type Input = MutexInput;

    fn init(&self) -> bool {
        false
    }

    fn step(&mut self, held: &bool, input: &MutexInput) -> Option<bool> {
        match input {
            MutexInput::Acquire => (!*held).then_some(true),
            MutexInput::Release => held.then_some(false),
        }
    }

    fn commutes_to_front(&self, _input: &MutexInput) -> bool {
        false
    }

    fn show(&self, held: &bool) -> String {
        if *held { "held" } else { "free" }.to_string()
    }

    fn state_heap_bytes(&self, _state: &bool) -> usize {
        0
    }
}

/// Many independent single-key models checked together (no per-key split): the state is
/// one inner state per key. Used for `--no-partition` and its benchmark.
pub(crate) struct Keyed<M: SeqModel> {
    pub inner: M,
    pub keys: Vec<Value>,
}

impl<M: SeqModel> SeqModel for Keyed<M> {
    type State = Vec<M::State>;
    type Input = (u32, M::Input);

    fn init(&self) -> Self::State {
        vec![self.inner.init(); self.keys.len()]
    }

    fn step(&mut self, state: &Self::State, (key, input): &Self::Input) -> Option<Self::State> {
        let next = self.inner.step(&state[*key as usize], input)?;
        let mut out = state.clone();
        out[*key as usize] = next;
        Some(out)
    }

    fn commutes_to_front(&self, (_, input): &Self::Input) -> bool {
        self.inner.commutes_to_front(input)
    }

    fn produces(&self, (key, input): &Self::Input) -> Option<u64> {
        self.inner.produces(input).map(|v| (*key as u64) << 32 | v)
    }

    fn requires(&self, (key, input): &Self::Input) -> Option<u64> {
        self.inner.requires(input).map(|v| (*key as u64) << 32 | v)
    }

    fn show(&self, state: &Self::State) -> String {
        let parts: Vec<String> = self
            .keys
            .iter()
            .zip(state)
            .map(|(k, s)| format!("{k} {}", self.inner.show(s)))
            .collect();
        format!("{{{}}}", parts.join(", "))
    }

    fn state_heap_bytes(&self, state: &Self::State) -> usize {
        state.len() * std::mem::size_of::<M::State>()
    }
}

#[derive(Clone, Copy, Debug)]
pub(crate) enum Micro {
    Read(u32, u32),
    Write(u32, u32),
}

/// Registers keyed by name; operations are transactions of micro-operations.
pub(crate) struct MultiRegisterModel {
    pub interner: Interner,
    pub keys: Vec<Value>,
    key_ids: HashMap<Value, u32>,
    initial: u32,
}

impl MultiRegisterModel {
    pub(crate) fn new(semantics: &Semantics) -> MultiRegisterModel {
        let mut interner = Interner::new();
        let initial = semantics
            .initial
            .as_ref()
            .map(|v| interner.id(v))
            .unwrap_or(0);
        MultiRegisterModel {
            interner,
            keys: Vec::new(),
            key_ids: HashMap::new(),
            initial,
        }
    }

    fn key_id(&mut self, key: &Value) -> u32 {
        if let Some(&id) = self.key_ids.get(key) {
            return id;
        }
        let id = self.keys.len() as u32;
        self.keys.push(key.clone());
        self.key_ids.insert(key.clone(), id);
        id
    }

    /// The keys a txn touches (for splitting into independent groups).
    pub(crate) fn txn_keys(op: &Op) -> Result<Vec<Value>, String> {
        let value = if op.input.is_nil() {
            &op.output
        } else {
            &op.input
        };
        let micros = value
            .as_list()
            .ok_or_else(|| format!("txn value must be a list of micro-ops, got {value}"))?;
        let mut keys = Vec::with_capacity(micros.len());
        for micro in micros {
            let parts = micro
                .as_list()
                .filter(|p| p.len() == 3)
                .ok_or_else(|| format!("bad micro-op {micro}"))?;
            keys.push(parts[1].clone());
        }
        Ok(keys)
    }

    pub(crate) fn compile(
        &mut self,
        op: &Op,
        semantics: &Semantics,
    ) -> Result<Option<Vec<Micro>>, String> {
        if op.f != "txn" {
            return Err(format!("model multi-register has no operation :{}", op.f));
        }
        // Reads come from the completion; writes from the invoke (or the completion).
        let invoked = op.input.as_list().unwrap_or(&[]);
        let completed = if op.status == OpStatus::Ok {
            op.output.as_list()
        } else {
            None
        };
        let micros = completed.unwrap_or(invoked);
        if micros.is_empty() && !(op.input.as_list().is_some() || op.output.as_list().is_some()) {
            return Err(format!(
                "txn value must be a list of micro-ops, got {}",
                op.input
            ));
        }
        let mut out = Vec::with_capacity(micros.len());
        for micro in micros {
            let parts = micro
                .as_list()
                .filter(|p| p.len() == 3)
                .ok_or_else(|| format!("bad micro-op {micro}"))?;
            let key = self.key_id(&parts[1]);
            let kind = match &parts[0] {
                Value::Keyword(k) | Value::Str(k) => k.as_str(),
                other => return Err(format!("bad micro-op kind {other}")),
            };
            match kind {
                "read" | "r" => {
                    let known = op.status == OpStatus::Ok && completed.is_some();
                    if known && (!parts[2].is_nil() || semantics.strict_nil) {
                        out.push(Micro::Read(key, self.interner.id(&parts[2])));
                    }
                }
                "write" | "w" => out.push(Micro::Write(key, self.interner.id(&parts[2]))),
                other => return Err(format!("bad micro-op kind :{other}")),
            }
        }
        let writes = out.iter().any(|m| matches!(m, Micro::Write(..)));
        if out.is_empty() || (!writes && op.status != OpStatus::Ok) {
            return Ok(None);
        }
        Ok(Some(out))
    }
}

impl SeqModel for MultiRegisterModel {
    type State = Vec<u32>;
    type Input = Vec<Micro>;

    fn init(&self) -> Vec<u32> {
        vec![self.initial; self.keys.len()]
    }

    fn step(&mut self, state: &Vec<u32>, input: &Vec<Micro>) -> Option<Vec<u32>> {
        let mut next = state.clone();
        for micro in input {
            match *micro {
                Micro::Read(k, v) => {
                    if next[k as usize] != v {
                        return None;
                    }
                }
                Micro::Write(k, v) => next[k as usize] = v,
            }
        }
        Some(next)
    }

    fn commutes_to_front(&self, input: &Vec<Micro>) -> bool {
        input.iter().all(|m| matches!(m, Micro::Read(..)))
    }

    fn show(&self, state: &Vec<u32>) -> String {
        let parts: Vec<String> = self
            .keys
            .iter()
            .zip(state)
            .map(|(k, v)| format!("{k} {}", self.interner.value(*v)))
            .collect();
        format!("{{{}}}", parts.join(", "))
    }

    fn state_heap_bytes(&self, state: &Vec<u32>) -> usize {
        state.len() * 4
    }
}
