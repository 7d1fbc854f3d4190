//! The dependency graph between resources.
//!
//! [`DependencyResolver`] owns a petgraph `StableDiGraph` whose edges run from a dependency to
//! its dependent. Every algorithm here is iterative (Kahn's algorithm, breadth-first searches,
//! petgraph's iterative Kosaraju), so a chain of a million resources does not overflow the
//! stack; ties are broken by id so every order is deterministic. It knows ids only: no
//! resource contents, no states, no storage.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet, VecDeque};

use petgraph::Direction::{Incoming, Outgoing};
use petgraph::stable_graph::{NodeIndex, StableDiGraph};
use petgraph::visit::NodeIndexable;

use crate::error::StateError;
use crate::ids::{IdKind, validate_id};

#[derive(Debug, Clone)]
struct Node {
    id: String,
    /// False for a placeholder created because something depends on an id not yet added.
    declared: bool,
}

/// The dependency graph.
#[derive(Debug, Clone, Default)]
pub struct DependencyResolver {
    graph: StableDiGraph<Node, ()>,
    index: HashMap<String, NodeIndex>,
    declared: usize,
}

impl DependencyResolver {
    /// An empty graph.
    pub fn new() -> Self {
        Self::default()
    }

    /// How many resources were added.
    pub fn len(&self) -> usize {
        self.declared
    }

    /// Whether no resource was added.
    pub fn is_empty(&self) -> bool {
        self.declared == 0
    }

    /// Whether `id` was added.
    pub fn contains(&self, id: &str) -> bool {
        self.declared_node(id).is_some()
    }

    fn declared_node(&self, id: &str) -> Option<NodeIndex> {
        self.index
            .get(id)
            .copied()
            .filter(|&n| self.graph[n].declared)
    }

    fn node_or_placeholder(&mut self, id: &str) -> NodeIndex {
        if let Some(&n) = self.index.get(id) {
            return n;
        }
        let n = self.graph.add_node(Node {
            id: id.to_owned(),
            declared: false,
        });
        self.index.insert(id.to_owned(), n);
        n
    }

    /// Adds a resource depending on `depends_on`. Dependencies may be added later (until then
    /// ordering queries report them as unknown). A resource depending on itself is a cycle.
    pub fn add<I, S>(&mut self, id: &str, depends_on: I) -> Result<(), StateError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let deps = Self::checked_dependencies(id, depends_on)?;
        if self.contains(id) {
            return Err(StateError::DuplicateResource {
                resource_id: id.to_owned(),
            });
        }
        let node = self.node_or_placeholder(id);
        self.graph[node].declared = true;
        self.declared += 1;
        for dep in deps {
            let d = self.node_or_placeholder(&dep);
            self.graph.update_edge(d, node, ());
        }
        Ok(())
    }

    /// Replaces the dependencies of an added resource.
    pub fn set_dependencies<I, S>(&mut self, id: &str, depends_on: I) -> Result<(), StateError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let deps = Self::checked_dependencies(id, depends_on)?;
        let node = self.declared_node(id).ok_or_else(|| unknown(id))?;
        let old: Vec<NodeIndex> = self.graph.neighbors_directed(node, Incoming).collect();
        for d in old {
            if let Some(e) = self.graph.find_edge(d, node) {
                self.graph.remove_edge(e);
            }
            self.drop_orphan_placeholder(d);
        }
        for dep in deps {
            let d = self.node_or_placeholder(&dep);
            self.graph.update_edge(d, node, ());
        }
        Ok(())
    }

    fn checked_dependencies<I, S>(id: &str, depends_on: I) -> Result<Vec<String>, StateError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let invalid = |e: crate::error::ValidationError| StateError::InvalidResource {
            resource_id: id.to_owned(),
            reason: e.to_string(),
        };
        validate_id(IdKind::Resource, id).map_err(invalid)?;
        let mut deps = Vec::new();
        for dep in depends_on {
            let dep = dep.as_ref();
            validate_id(IdKind::Resource, dep).map_err(invalid)?;
            if dep == id {
                return Err(StateError::DependencyCycle {
                    cycle: vec![id.to_owned()],
                });
            }
            deps.push(dep.to_owned());
        }
        deps.sort();
        deps.dedup();
        Ok(deps)
    }

    /// The cycle that adding `id` with `depends_on` would close, if any, in cycle order
    /// (starting from its smallest id; each member depends on the next).
    pub fn would_cycle<S: AsRef<str>>(&self, id: &str, depends_on: &[S]) -> Option<Vec<String>> {
        if depends_on.iter().any(|d| d.as_ref() == id) {
            return Some(vec![id.to_owned()]);
        }
        // Only an existing node (declared or placeholder) can already have dependents.
        let start = *self.index.get(id)?;
        let targets: HashSet<NodeIndex> = depends_on
            .iter()
            .filter_map(|d| self.index.get(d.as_ref()).copied())
            .collect();
        let mut parent: HashMap<NodeIndex, NodeIndex> = HashMap::new();
        let mut queue = VecDeque::from([start]);
        while let Some(n) = queue.pop_front() {
            let mut next: Vec<NodeIndex> = self.graph.neighbors_directed(n, Outgoing).collect();
            next.sort_by(|a, b| self.graph[*a].id.cmp(&self.graph[*b].id));
            for m in next {
                if m == start || parent.contains_key(&m) {
                    continue;
                }
                parent.insert(m, n);
                if targets.contains(&m) {
                    // start -> ... -> m along "is depended on by"; `id` would depend on m.
                    let mut path = vec![m];
                    let mut at = m;
                    while let Some(&p) = parent.get(&at) {
                        path.push(p);
                        at = p;
                    }
                    // path = [m, ..., start]: m depends on its predecessor ... ; cycle order
                    // wants each member to depend on the next, i.e. start, m, ..., reversed.
                    path.pop();
                    let mut cycle: Vec<String> = std::iter::once(start)
                        .chain(path)
                        .map(|x| self.graph[x].id.clone())
                        .collect();
                    rotate_to_smallest(&mut cycle);
                    return Some(cycle);
                }
                queue.push_back(m);
            }
        }
        None
    }

    /// Removes a resource. Refused while other added resources depend on it.
    pub fn remove(&mut self, id: &str) -> Result<(), StateError> {
        let node = self.declared_node(id).ok_or_else(|| unknown(id))?;
        let dependents = self.sorted_ids(self.graph.neighbors_directed(node, Outgoing));
        if !dependents.is_empty() {
            return Err(StateError::HasDependents {
                resource_id: id.to_owned(),
                dependents,
            });
        }
        let deps: Vec<NodeIndex> = self.graph.neighbors_directed(node, Incoming).collect();
        self.graph.remove_node(node);
        self.index.remove(id);
        self.declared -= 1;
        for d in deps {
            self.drop_orphan_placeholder(d);
        }
        Ok(())
    }

    fn drop_orphan_placeholder(&mut self, node: NodeIndex) {
        let orphan = !self.graph[node].declared
            && self
                .graph
                .neighbors_directed(node, Outgoing)
                .next()
                .is_none();
        if orphan {
            let id = self.graph[node].id.clone();
            self.graph.remove_node(node);
            self.index.remove(&id);
        }
    }

    fn sorted_ids(&self, nodes: impl Iterator<Item = NodeIndex>) -> Vec<String> {
        let mut ids: Vec<String> = nodes.map(|n| self.graph[n].id.clone()).collect();
        ids.sort();
        ids
    }

    /// The direct dependencies of `id`, sorted.
    pub fn dependencies(&self, id: &str) -> Result<Vec<String>, StateError> {
        let node = self.declared_node(id).ok_or_else(|| unknown(id))?;
        Ok(self.sorted_ids(self.graph.neighbors_directed(node, Incoming)))
    }

    /// The direct dependents of `id`, sorted.
    pub fn dependents(&self, id: &str) -> Result<Vec<String>, StateError> {
        let node = self.declared_node(id).ok_or_else(|| unknown(id))?;
        Ok(self.sorted_ids(self.graph.neighbors_directed(node, Outgoing)))
    }

    /// Everything `id` depends on, directly or transitively, sorted.
    pub fn transitive_dependencies(&self, id: &str) -> Result<Vec<String>, StateError> {
        self.reachable(id, Incoming)
    }

    /// Impact analysis: everything that depends on `id`, directly or transitively, sorted.
    pub fn impact(&self, id: &str) -> Result<Vec<String>, StateError> {
        self.reachable(id, Outgoing)
    }

    fn reachable(
        &self,
        id: &str,
        direction: petgraph::Direction,
    ) -> Result<Vec<String>, StateError> {
        let mut ids = Vec::new();
        self.visit_reachable(id, direction, |_, found| ids.push(found.to_owned()))?;
        ids.sort_unstable();
        Ok(ids)
    }

    /// Impact analysis without collecting: calls `visit(slot, id)` for everything that depends
    /// on `id`, in breadth-first order. `slot` is a small number identifying the resource until
    /// the next [`DependencyResolver::remove`] (callers may cache per-resource data by it).
    pub fn for_each_impacted<'a>(
        &'a self,
        id: &str,
        visit: impl FnMut(usize, &'a str),
    ) -> Result<(), StateError> {
        self.visit_reachable(id, Outgoing, visit)
    }

    fn visit_reachable<'a>(
        &'a self,
        id: &str,
        direction: petgraph::Direction,
        mut visit: impl FnMut(usize, &'a str),
    ) -> Result<(), StateError> {
        let start = self.declared_node(id).ok_or_else(|| unknown(id))?;
        let mut seen = vec![false; self.graph.node_bound()];
        seen[start.index()] = true;
        let mut queue = VecDeque::from([start]);
        while let Some(n) = queue.pop_front() {
            for next in self.graph.neighbors_directed(n, direction) {
                if !std::mem::replace(&mut seen[next.index()], true) {
                    visit(next.index(), &self.graph[next].id);
                    queue.push_back(next);
                }
            }
        }
        Ok(())
    }

    /// Fails on the first unknown dependency (smallest dependent, then smallest dependency).
    fn check_complete(&self) -> Result<(), StateError> {
        let mut missing: Option<(String, String)> = None;
        for n in self
            .graph
            .node_indices()
            .filter(|&n| !self.graph[n].declared)
        {
            for dependent in self.graph.neighbors_directed(n, Outgoing) {
                let pair = (self.graph[dependent].id.clone(), self.graph[n].id.clone());
                if missing.as_ref().is_none_or(|m| pair < *m) {
                    missing = Some(pair);
                }
            }
        }
        match missing {
            Some((resource_id, dependency)) => Err(StateError::UnknownDependency {
                resource_id,
                dependency,
            }),
            None => Ok(()),
        }
    }

    /// Kahn's algorithm by waves: each wave holds the nodes whose dependencies all sit in
    /// earlier waves, sorted by id. Fails on unknown dependencies and on cycles.
    pub fn levels(&self) -> Result<Vec<Vec<String>>, StateError> {
        self.check_complete()?;
        let mut indegree: HashMap<NodeIndex, usize> = self
            .graph
            .node_indices()
            .map(|n| (n, self.graph.neighbors_directed(n, Incoming).count()))
            .collect();
        let mut wave: Vec<NodeIndex> = indegree
            .iter()
            .filter(|&(_, &d)| d == 0)
            .map(|(&n, _)| n)
            .collect();
        let mut levels = Vec::new();
        let mut placed = 0;
        while !wave.is_empty() {
            let mut next = Vec::new();
            for &n in &wave {
                for m in self.graph.neighbors_directed(n, Outgoing) {
                    let d = indegree.entry(m).or_default();
                    *d -= 1;
                    if *d == 0 {
                        next.push(m);
                    }
                }
            }
            placed += wave.len();
            levels.push(self.sorted_ids(wave.into_iter()));
            wave = next;
        }
        if placed < self.graph.node_count() {
            return Err(self.first_cycle_error());
        }
        Ok(levels)
    }

    /// Every resource, dependencies first; among resources whose dependencies are all placed,
    /// the smallest id comes first. Fails on unknown dependencies and on cycles.
    pub fn topological_order(&self) -> Result<Vec<String>, StateError> {
        let mut order = Vec::with_capacity(self.graph.node_count());
        self.for_each_in_order(|_, id| order.push(id.to_owned()))?;
        Ok(order)
    }

    /// [`DependencyResolver::topological_order`] without collecting: calls `visit(slot, id)` in
    /// order (see [`DependencyResolver::for_each_impacted`] for slots). Nothing is visited if
    /// the graph has unknown dependencies or a cycle.
    pub fn for_each_in_order<'a>(
        &'a self,
        mut visit: impl FnMut(usize, &'a str),
    ) -> Result<(), StateError> {
        self.check_complete()?;
        // Rank nodes by id once, so the ready queue compares integers, not strings.
        let bound = self.graph.node_bound();
        let mut by_id: Vec<NodeIndex> = self.graph.node_indices().collect();
        by_id.sort_unstable_by(|a, b| self.graph[*a].id.cmp(&self.graph[*b].id));
        let mut rank = vec![0u32; bound];
        for (r, n) in by_id.iter().enumerate() {
            rank[n.index()] = r as u32;
        }
        let mut indegree = vec![0u32; bound];
        let mut ready: BinaryHeap<Reverse<u32>> = BinaryHeap::new();
        for &n in &by_id {
            let d = self.graph.neighbors_directed(n, Incoming).count() as u32;
            indegree[n.index()] = d;
            if d == 0 {
                ready.push(Reverse(rank[n.index()]));
            }
        }
        let mut order = Vec::with_capacity(by_id.len());
        while let Some(Reverse(r)) = ready.pop() {
            let n = by_id[r as usize];
            order.push(n);
            for m in self.graph.neighbors_directed(n, Outgoing) {
                let d = &mut indegree[m.index()];
                *d -= 1;
                if *d == 0 {
                    ready.push(Reverse(rank[m.index()]));
                }
            }
        }
        if order.len() < by_id.len() {
            return Err(self.first_cycle_error());
        }
        for n in order {
            visit(n.index(), &self.graph[n].id);
        }
        Ok(())
    }

    /// The order to tear resources down in: dependents before their dependencies.
    pub fn teardown_order(&self) -> Result<Vec<String>, StateError> {
        let mut order = self.topological_order()?;
        order.reverse();
        Ok(order)
    }

    fn first_cycle_error(&self) -> StateError {
        let cycle = self.find_cycles().into_iter().next().unwrap_or_default();
        StateError::DependencyCycle { cycle }
    }

    /// One cycle per strongly connected component that has one, sorted by first member.
    ///
    /// Each cycle lists its members in cycle order starting from the component's smallest id:
    /// each member depends on the next and the last depends on the first. Where a component
    /// holds several cycles, the shortest through its smallest id is reported.
    pub fn find_cycles(&self) -> Vec<Vec<String>> {
        let mut cycles: Vec<Vec<String>> = petgraph::algo::kosaraju_scc(&self.graph)
            .into_iter()
            .filter(|scc| scc.len() > 1)
            .map(|scc| self.cycle_through_smallest(&scc))
            .collect();
        cycles.sort();
        cycles
    }

    /// The shortest cycle through the smallest id of a strongly connected component, following
    /// "depends on" links (incoming edges) and breaking ties by id.
    fn cycle_through_smallest(&self, scc: &[NodeIndex]) -> Vec<String> {
        let members: HashSet<NodeIndex> = scc.iter().copied().collect();
        let Some(&start) = scc
            .iter()
            .min_by(|a, b| self.graph[**a].id.cmp(&self.graph[**b].id))
        else {
            return Vec::new();
        };
        let mut parent: HashMap<NodeIndex, NodeIndex> = HashMap::new();
        let mut queue = VecDeque::from([start]);
        while let Some(n) = queue.pop_front() {
            let mut deps: Vec<NodeIndex> = self
                .graph
                .neighbors_directed(n, Incoming)
                .filter(|d| members.contains(d))
                .collect();
            deps.sort_by(|a, b| self.graph[*a].id.cmp(&self.graph[*b].id));
            for d in deps {
                if d == start {
                    let mut path = vec![n];
                    let mut at = n;
                    while let Some(&p) = parent.get(&at) {
                        path.push(p);
                        at = p;
                    }
                    path.reverse();
                    return path.into_iter().map(|x| self.graph[x].id.clone()).collect();
                }
                if d != start && !parent.contains_key(&d) {
                    parent.insert(d, n);
                    queue.push_back(d);
                }
            }
        }
        // A strongly connected component always has a cycle through each member.
        self.sorted_ids(scc.iter().copied())
    }
}

/// Rotates a cycle so it starts at its smallest member (keeping cycle order).
fn rotate_to_smallest(cycle: &mut [String]) {
    if let Some(pos) = cycle
        .iter()
        .enumerate()
        .min_by(|a, b| a.1.cmp(b.1))
        .map(|(i, _)| i)
    {
        cycle.rotate_left(pos);
    }
}

fn unknown(id: &str) -> StateError {
    StateError::UnknownResource {
        resource_id: id.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn graph(edges: &[(&str, &[&str])]) -> DependencyResolver {
        let mut g = DependencyResolver::new();
        for (id, deps) in edges {
            g.add(id, deps.iter()).expect("add");
        }
        g
    }

    fn three_tier() -> DependencyResolver {
        graph(&[
            ("lb", &["app-a", "app-b"]),
            ("app-a", &["db"]),
            ("app-b", &["db", "cache"]),
            ("db", &[]),
            ("cache", &[]),
        ])
    }

    #[test]
    fn orders_dependencies_first_with_ties_by_id() {
        let g = three_tier();
        assert_eq!(
            g.topological_order().expect("order"),
            ["cache", "db", "app-a", "app-b", "lb"]
        );
        assert_eq!(
            g.levels().expect("levels"),
            vec![vec!["cache", "db"], vec!["app-a", "app-b"], vec!["lb"]]
        );
        assert_eq!(
            g.teardown_order().expect("teardown"),
            ["lb", "app-b", "app-a", "db", "cache"]
        );
    }

    #[test]
    fn queries() {
        let g = three_tier();
        assert_eq!(g.impact("db").expect("impact"), ["app-a", "app-b", "lb"]);
        assert_eq!(g.impact("lb").expect("impact"), Vec::<String>::new());
        assert_eq!(g.dependencies("app-b").expect("deps"), ["cache", "db"]);
        assert_eq!(g.dependents("db").expect("dependents"), ["app-a", "app-b"]);
        assert_eq!(
            g.transitive_dependencies("lb").expect("deps"),
            ["app-a", "app-b", "cache", "db"]
        );
        assert_eq!(g.len(), 5);
        assert!(g.contains("db") && !g.contains("nope"));
        assert!(matches!(
            g.impact("nope"),
            Err(StateError::UnknownResource { .. })
        ));
    }

    #[test]
    fn unknown_dependencies_are_reported_until_added() {
        let mut g = graph(&[("app", &["db"])]);
        assert_eq!(
            g.topological_order(),
            Err(StateError::UnknownDependency {
                resource_id: "app".into(),
                dependency: "db".into()
            })
        );
        assert!(!g.contains("db"));
        assert_eq!(g.len(), 1);
        g.add("db", [""; 0]).expect("add db");
        assert_eq!(g.topological_order().expect("order"), ["db", "app"]);
    }

    #[test]
    fn cycles_are_reported_in_cycle_order() {
        let g = graph(&[
            ("a", &["b"]),
            ("b", &["c"]),
            ("c", &["a"]),
            ("x", &["a"]),
            ("p", &["q"]),
            ("q", &["p"]),
        ]);
        assert_eq!(
            g.find_cycles(),
            vec![
                vec!["a".to_string(), "b".into(), "c".into()],
                vec!["p".to_string(), "q".into()]
            ]
        );
        assert_eq!(
            g.topological_order(),
            Err(StateError::DependencyCycle {
                cycle: vec!["a".into(), "b".into(), "c".into()]
            })
        );
        assert!(matches!(
            g.levels(),
            Err(StateError::DependencyCycle { .. })
        ));
        assert_eq!(
            StateError::DependencyCycle {
                cycle: vec!["a".into(), "b".into()]
            }
            .to_string(),
            "dependency cycle: a -> b -> a"
        );
    }

    #[test]
    fn would_cycle_names_the_cycle_it_would_close() {
        // c depends on b, b depends on a; adding a -> c would close a -> c -> b -> a.
        let g = graph(&[("b", &["a"]), ("c", &["b"])]);
        assert_eq!(
            g.would_cycle("a", &["c"]),
            Some(vec!["a".into(), "c".into(), "b".into()])
        );
        assert_eq!(g.would_cycle("a", &["x"]), None);
        assert_eq!(g.would_cycle("z", &["c"]), None);
        assert_eq!(g.would_cycle("q", &["q"]), Some(vec!["q".into()]));
        let mut h = g;
        h.add("a", ["c"]).expect("add");
        assert_eq!(
            h.find_cycles(),
            vec![vec!["a".to_string(), "c".into(), "b".into()]]
        );
    }

    #[test]
    fn self_dependency_duplicates_and_bad_ids_are_refused() {
        let mut g = DependencyResolver::new();
        assert_eq!(
            g.add("a", ["a"]),
            Err(StateError::DependencyCycle {
                cycle: vec!["a".into()]
            })
        );
        g.add("a", [""; 0]).expect("add");
        assert!(matches!(
            g.add("a", [""; 0]),
            Err(StateError::DuplicateResource { .. })
        ));
        assert!(matches!(
            g.add("b c", [""; 0]),
            Err(StateError::InvalidResource { .. })
        ));
        assert!(matches!(
            g.add("b", ["bad id"]),
            Err(StateError::InvalidResource { .. })
        ));
        assert_eq!(g.len(), 1);
    }

    #[test]
    fn remove_refuses_while_depended_on_and_cleans_placeholders() {
        let mut g = three_tier();
        assert_eq!(
            g.remove("db"),
            Err(StateError::HasDependents {
                resource_id: "db".into(),
                dependents: vec!["app-a".into(), "app-b".into()]
            })
        );
        g.remove("lb").expect("remove lb");
        assert_eq!(
            g.topological_order().expect("order"),
            ["cache", "db", "app-a", "app-b"]
        );
        let mut h = graph(&[("app", &["ghost"])]);
        h.remove("app").expect("remove");
        assert!(h.is_empty());
        assert_eq!(
            h.graph.node_count(),
            0,
            "the placeholder went with its last dependent"
        );
        assert!(matches!(
            h.remove("app"),
            Err(StateError::UnknownResource { .. })
        ));
    }

    #[test]
    fn set_dependencies_rewires() {
        let mut g = three_tier();
        g.set_dependencies("app-b", ["db"]).expect("rewire");
        assert_eq!(
            g.dependents("cache").expect("dependents"),
            Vec::<String>::new()
        );
        g.set_dependencies("db", ["lb"])
            .expect("rewire into a cycle");
        assert!(matches!(
            g.topological_order(),
            Err(StateError::DependencyCycle { .. })
        ));
        assert!(matches!(
            g.set_dependencies("nope", ["db"]),
            Err(StateError::UnknownResource { .. })
        ));
    }

    #[test]
    fn a_million_long_chain_does_not_overflow() {
        let mut g = DependencyResolver::new();
        let n = 1_000_000;
        g.add("r0000000", [""; 0]).expect("add");
        for i in 1..n {
            g.add(&format!("r{i:07}"), [format!("r{:07}", i - 1)])
                .expect("add");
        }
        let order = g.topological_order().expect("order");
        assert_eq!(order.len(), n);
        assert_eq!(order[n - 1], format!("r{:07}", n - 1));
        assert_eq!(g.impact("r0999990").expect("impact").len(), 9);
        assert!(g.find_cycles().is_empty());
        g.set_dependencies("r0000000", ["r0999999"])
            .expect("close the loop");
        let cycles = g.find_cycles();
        assert_eq!(cycles.len(), 1);
        assert_eq!(cycles[0].len(), n);
        assert_eq!(cycles[0][0], "r0000000");
        assert_eq!(cycles[0][1], "r0999999", "r0000000 depends on r0999999");
    }

    fn dag() -> impl Strategy<Value = Vec<(usize, Vec<usize>)>> {
        (2usize..40).prop_flat_map(|n| {
            proptest::collection::vec(
                proptest::collection::vec(any::<proptest::sample::Index>(), 0..4),
                n,
            )
            .prop_map(move |choices| {
                choices
                    .into_iter()
                    .enumerate()
                    .map(|(i, picks)| {
                        let deps = if i == 0 {
                            vec![]
                        } else {
                            picks.iter().map(|p| p.index(i)).collect()
                        };
                        (i, deps)
                    })
                    .collect()
            })
        })
    }

    proptest! {
        #[test]
        fn topological_order_respects_every_edge(nodes in dag(), shuffle in any::<u64>()) {
            let mut g = DependencyResolver::new();
            let name = |i: usize| format!("n{:03}", (i as u64 * 7919 + shuffle % 97) % 1000);
            let mut order_in: Vec<_> = nodes.clone();
            order_in.reverse();
            for (i, deps) in &order_in {
                g.add(&name(*i), deps.iter().map(|d| name(*d))).expect("add");
            }
            let order = g.topological_order().expect("dag");
            let pos: HashMap<&str, usize> = order.iter().enumerate().map(|(p, id)| (id.as_str(), p)).collect();
            for (i, deps) in &nodes {
                for d in deps {
                    prop_assert!(pos[name(*d).as_str()] < pos[name(*i).as_str()]);
                }
            }
            let levels = g.levels().expect("levels");
            prop_assert_eq!(levels.iter().map(Vec::len).sum::<usize>(), nodes.len());
        }

        #[test]
        fn an_injected_cycle_is_found_with_exactly_its_members(nodes in dag(), len in 2usize..8, seed in any::<u64>()) {
            let mut g = DependencyResolver::new();
            for (i, deps) in &nodes {
                g.add(&format!("d{i:03}"), deps.iter().map(|d| format!("d{d:03}"))).expect("add");
            }
            // A separate ring c0 -> c1 -> ... -> c(len-1) -> c0 hanging off random DAG nodes.
            let ring: Vec<String> = (0..len).map(|k| format!("c{:02}", (k as u64 + seed) % 100)).collect();
            let mut unique = ring.clone();
            unique.sort();
            unique.dedup();
            prop_assume!(unique.len() == len);
            for k in 0..len {
                let anchor = format!("d{:03}", (seed as usize + k) % nodes.len());
                g.add(&ring[k], [ring[(k + 1) % len].clone(), anchor]).expect("add ring");
            }
            let cycles = g.find_cycles();
            prop_assert_eq!(cycles.len(), 1);
            let mut members = cycles[0].clone();
            members.sort();
            prop_assert_eq!(&members, &unique);
            // Cycle order: each member depends on the next.
            for (k, id) in cycles[0].iter().enumerate() {
                let next = &cycles[0][(k + 1) % len];
                prop_assert!(g.dependencies(id).expect("deps").contains(next));
            }
        }
    }
}
